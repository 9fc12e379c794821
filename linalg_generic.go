//go:build (!amd64 && !arm64) || purego

package neuralode

// haveFMA is false without the assembly kernels (amd64, arm64): every
// product runs in plain Go.
const haveFMA = false

// gemmKernel6x8 is never called when haveFMA is false.
func gemmKernel6x8(k int, a *float64, rsA, csA int, b *float64, ldb int, c *float64, ldc int, acc bool) {
	panic("neuralode: no assembly kernels in this build")
}
