//go:build !amd64 || purego

package neuralode

// haveAVX512 is false without the amd64 assembly kernels: gemm's 16-column
// path and gq-adaptive's vector sums are amd64's.
const haveAVX512 = false

// haveAVXKernels is false without the amd64 assembly kernels: the MLP's
// activations and Adam's update run in Go.
const haveAVXKernels = false

// gemmKernel8x16 is never called when haveAVX512 is false.
func gemmKernel8x16(k int, a *float64, rsA, csA int, b *float64, ldb, b2 int, c *float64, ldc int, acc bool) {
	panic("neuralode: no AVX-512 kernels in this build")
}

// gemmKernel6x16 is never called when haveAVX512 is false.
func gemmKernel6x16(k int, a *float64, rsA, csA int, b *float64, ldb, b2 int, c *float64, ldc int, acc bool) {
	panic("neuralode: no AVX-512 kernels in this build")
}

// gemmKernel4x16 is never called when haveAVX512 is false.
func gemmKernel4x16(k int, a *float64, rsA, csA int, b *float64, ldb, b2 int, c *float64, ldc int, acc bool) {
	panic("neuralode: no AVX-512 kernels in this build")
}

// gemmKernel2x16 is never called when haveAVX512 is false.
func gemmKernel2x16(k int, a *float64, rsA, csA int, b *float64, ldb, b2 int, c *float64, ldc int, acc bool) {
	panic("neuralode: no AVX-512 kernels in this build")
}

// gqaSumsAVX512 is never called when haveAVX512 is false.
func gqaSumsAVX512(vs *float64, stride, n, m int, coef *float64, out *[7]*float64) {
	panic("neuralode: no AVX-512 kernels in this build")
}

// gqaNodeAVX512 is never called when haveAVX512 is false.
func gqaNodeAVX512(v *float64, m int, coef *float64, out *[7]*float64, first bool) {
	panic("neuralode: no AVX-512 kernels in this build")
}
