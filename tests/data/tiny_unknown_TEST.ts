@problemName Tiny
@univariate true
@classLabel true up down sideways
@data
1,2,3,4,5,6,7,8:sideways
1,2,3,4,5,6,7,8:up
