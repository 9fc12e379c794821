//go:build !amd64 || purego

package neuralode

// activationRowAVX is never called without the amd64 kernels (haveAVXKernels).
func activationRowAVX(row, drow, bias *float64, n, rows, mode int) {
	panic("neuralode: no assembly kernels in this build")
}

// activationRowAVX512 is never called without the amd64 kernels (haveAVXKernels).
func activationRowAVX512(row, drow, bias *float64, n, rows, mode int) {
	panic("neuralode: no assembly kernels in this build")
}

// adamRowAVX is never called without the amd64 kernels (haveAVXKernels).
func adamRowAVX(theta, grad, m, v *float64, n int, c *[8]float64) {
	panic("neuralode: no assembly kernels in this build")
}

// adamBoundsAVX is never called without the amd64 kernels (haveAVXKernels).
func adamBoundsAVX(theta, grad, m, v *float64, n int, out *[24]float64) {
	panic("neuralode: no assembly kernels in this build")
}

// mulRowAVX is never called without the amd64 kernels (haveAVXKernels).
func mulRowAVX(x, y *float64, n int) {
	panic("neuralode: no assembly kernels in this build")
}
