@problemName M
@classLabel true a b
@data
1,2,3:a
1,x,3:b
