package neuralode
