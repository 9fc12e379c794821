//go:build arm64 && !purego

package neuralode

// haveFMA is true on arm64: Advanced SIMD with fused multiply–add on two
// float64 lanes is part of the base architecture (ARMv8-A), so there is
// nothing to detect. gemm runs its 6×8 tiles on gemmKernel6x8; the MLP's
// activations and Adam's update stay in Go (haveAVXKernels).
const haveFMA = true

// haveAVX512 is false on arm64: gemm's 16-column path is amd64's.
const haveAVX512 = false

// haveAVXKernels is false on arm64: the activation and Adam kernels are
// amd64 assembly.
const haveAVXKernels = false

// gemmKernel6x8 is the register-tile kernel of gemm (linalg_arm64.s).
//
//go:noescape
func gemmKernel6x8(k int, a *float64, rsA, csA int, b *float64, ldb int, c *float64, ldc int, acc bool)

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
