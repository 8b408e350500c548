@problemName M
@classLabel true a b
