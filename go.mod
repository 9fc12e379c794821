module github.com/neuralode/neuralode

go 1.22
