//go:build !amd64 || purego

package neuralode

// tanhRowAVX is never called when haveFMA is false.
func tanhRowAVX(row, drow, bias *float64, n int) {
	panic("neuralode: no assembly kernels in this build")
}

// softplusRowAVX is never called when haveFMA is false.
func softplusRowAVX(row, drow, bias *float64, n int, sigmoid bool) {
	panic("neuralode: no assembly kernels in this build")
}
