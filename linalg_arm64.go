//go:build arm64 && !purego

package neuralode

// haveFMA is true on arm64: Advanced SIMD with fused multiply–add on two
// float64 lanes is part of the base architecture (ARMv8-A), so there is
// nothing to detect. gemm runs its 6×8 tiles on gemmKernel6x8; the MLP's
// activations and Adam's update stay in Go (haveAVXKernels is false), and
// so do gq-adaptive's sums (haveAVX512).
const haveFMA = true

// gemmKernel6x8 is the register-tile kernel of gemm (linalg_arm64.s).
//
//go:noescape
func gemmKernel6x8(k int, a *float64, rsA, csA int, b *float64, ldb int, c *float64, ldc int, acc bool)
