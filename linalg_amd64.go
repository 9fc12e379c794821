//go:build amd64 && !purego

package neuralode

// cpuid executes CPUID with the given EAX and ECX inputs.
func cpuid(eaxArg, ecxArg uint32) (eax, ebx, ecx, edx uint32)

// xgetbv0 reads the extended control register XCR0 (XGETBV with ECX = 0).
func xgetbv0() (eax, edx uint32)

// haveAVXKernels: the MLP's activation kernels and Adam's update run in
// amd64 assembly where haveFMA holds (AVX2 and FMA).
const haveAVXKernels = true

// gemmKernel6x8 is the register-tile kernel of gemm (linalg_amd64.s).
//
//go:noescape
func gemmKernel6x8(k int, a *float64, rsA, csA int, b *float64, ldb int, c *float64, ldc int, acc bool)

// haveFMA reports whether the processor and the operating system support
// AVX2 and FMA: CPUID leaf 1 for FMA, AVX and OSXSAVE, XCR0 for the OS
// saving the XMM and YMM state on context switches (bits 1 and 2), and
// leaf 7 for AVX2. The standard library's internal/cpu cannot be imported,
// hence the two instructions in assembly.
var haveFMA = detectFMA()

func detectFMA() bool {
	maxLeaf, _, _, _ := cpuid(0, 0)
	if maxLeaf < 7 {
		return false
	}
	_, _, ecx1, _ := cpuid(1, 0)
	const fma, osxsave, avx = 1 << 12, 1 << 27, 1 << 28
	if ecx1&(fma|osxsave|avx) != fma|osxsave|avx {
		return false
	}
	if xcr0, _ := xgetbv0(); xcr0&6 != 6 {
		return false
	}
	_, ebx7, _, _ := cpuid(7, 0)
	const avx2 = 1 << 5
	return ebx7&avx2 != 0
}

// gemmKernel6x16 is the AVX-512 register-tile kernel of gemm
// (linalg_amd64.s): gemmKernel6x8's computation on sixteen columns, the
// second eight b2 elements after the first.
//
//go:noescape
func gemmKernel6x16(k int, a *float64, rsA, csA int, b *float64, ldb, b2 int, c *float64, ldc int, acc bool)

// haveAVX512 reports whether the processor and the operating system support
// AVX-512 Foundation and Doubleword/Quadword on top of haveFMA: CPUID leaf 7
// for AVX512F and AVX512DQ (the activation kernel's sign-bit masks and
// logical operations on ZMM registers), XCR0 for the OS saving the opmask
// and ZMM state (bits 5, 6 and 7).
var haveAVX512 = haveFMA && detectAVX512()

func detectAVX512() bool {
	if xcr0, _ := xgetbv0(); xcr0&0xe6 != 0xe6 {
		return false
	}
	_, ebx7, _, _ := cpuid(7, 0)
	const avx512f, avx512dq = 1 << 16, 1 << 17
	return ebx7&(avx512f|avx512dq) == avx512f|avx512dq
}

// gemmKernel8x16 is gemmKernel6x16 on eight rows (linalg_amd64.s), the
// tile height on AVX-512.
//
//go:noescape
func gemmKernel8x16(k int, a *float64, rsA, csA int, b *float64, ldb, b2 int, c *float64, ldc int, acc bool)

// gemmKernel4x16 and gemmKernel2x16 are gemmKernel6x16 on four and two rows
// (linalg_amd64.s), for the short sliver at the end of a row block.
//
//go:noescape
func gemmKernel4x16(k int, a *float64, rsA, csA int, b *float64, ldb, b2 int, c *float64, ldc int, acc bool)

//go:noescape
func gemmKernel2x16(k int, a *float64, rsA, csA int, b *float64, ldb, b2 int, c *float64, ldc int, acc bool)

// gqaSumsAVX512 is the AVX-512 kernel of gqaStoredSums.apply on m
// components, m a multiple of 8 (linalg_amd64.s); coef holds six
// coefficients per node (w, wk, c0…c3) and out the seven sums' first
// elements (ig, sk, ab, t0…t3).
//
//go:noescape
func gqaSumsAVX512(vs *float64, stride, n, m int, coef *float64, out *[7]*float64)

// gqaNodeAVX512 is the AVX-512 kernel of gqaNodeSums.apply on m
// components, m a multiple of 8 (linalg_amd64.s); coef = (w, wk, c0…c3),
// out the seven sums' first elements (ig, sk, ab, t0…t3).
//
//go:noescape
func gqaNodeAVX512(v *float64, m int, coef *float64, out *[7]*float64, first bool)
