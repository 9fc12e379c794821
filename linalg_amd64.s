//go:build amd64 && !purego

#include "textflag.h"

// GEMM16_ARGS loads the arguments of the 16-column kernels and scales the
// strides to bytes: CX = k, SI = a, R9 = rsA, R10 = csA, DI = b, R11 = ldb,
// BX = b2, DX = c, R12 = ldc.
#define GEMM16_ARGS \
	MOVQ k+0(FP), CX; \
	MOVQ a+8(FP), SI; \
	MOVQ rsA+16(FP), R9; \
	MOVQ csA+24(FP), R10; \
	MOVQ b+32(FP), DI; \
	MOVQ ldb+40(FP), R11; \
	MOVQ b2+48(FP), BX; \
	MOVQ c+56(FP), DX; \
	MOVQ ldc+64(FP), R12; \
	SHLQ $3, R9; \
	SHLQ $3, R10; \
	SHLQ $3, R11; \
	SHLQ $3, BX; \
	SHLQ $3, R12

// func cpuid(eaxArg, ecxArg uint32) (eax, ebx, ecx, edx uint32)
TEXT ·cpuid(SB), NOSPLIT, $0-24
	MOVL eaxArg+0(FP), AX
	MOVL ecxArg+4(FP), CX
	CPUID
	MOVL AX, eax+8(FP)
	MOVL BX, ebx+12(FP)
	MOVL CX, ecx+16(FP)
	MOVL DX, edx+20(FP)
	RET

// func xgetbv0() (eax, edx uint32)
TEXT ·xgetbv0(SB), NOSPLIT, $0-8
	MOVL $0, CX
	XGETBV
	MOVL AX, eax+0(FP)
	MOVL DX, edx+4(FP)
	RET

// Two rows of the C tile at base and base + ldc (R12): add them to the
// accumulators (ADD2ROWS) or store the accumulators (STORE2ROWS). The _FAR
// forms take the rows at base + 2·ldc and at base2.
#define ADD2ROWS(base, a0, a1, b0, b1) \
	VADDPD (base), a0, a0; VADDPD 32(base), a1, a1; \
	VADDPD (base)(R12*1), b0, b0; VADDPD 32(base)(R12*1), b1, b1
#define ADD2ROWS_FAR(base, a0, a1, base2, b0, b1) \
	VADDPD (base)(R12*2), a0, a0; VADDPD 32(base)(R12*2), a1, a1; \
	VADDPD (base2), b0, b0; VADDPD 32(base2), b1, b1
#define STORE2ROWS(base, a0, a1, b0, b1) \
	VMOVUPD a0, (base); VMOVUPD a1, 32(base); \
	VMOVUPD b0, (base)(R12*1); VMOVUPD b1, 32(base)(R12*1)
#define STORE2ROWS_FAR(base, a0, a1, base2, b0, b1) \
	VMOVUPD a0, (base)(R12*2); VMOVUPD a1, 32(base)(R12*2); \
	VMOVUPD b0, (base2); VMOVUPD b1, 32(base2)

// func gemmKernel6x8(k int, a *float64, rsA, csA int, b *float64, ldb int, c *float64, ldc int, acc bool)
//
// The 6×8 register tile: C[i][j] (+)= Σ_p A(i, p)·B(p, j) for i < 6, j < 8,
// with A(i, p) at a + (i·rsA + p·csA)·8 bytes and B(p, j) at
// b + (p·ldb + j)·8. Twelve YMM accumulators (two per row of the tile)
// start at zero and take one fused multiply–add per p, in order of p; at
// the end the tile is stored (acc false) or added to C (acc true). Per
// p: two 4-wide loads of B, six broadcasts of A, twelve FMAs.
TEXT ·gemmKernel6x8(SB), NOSPLIT, $0-65
	MOVQ k+0(FP), CX
	MOVQ a+8(FP), SI
	MOVQ rsA+16(FP), R9
	MOVQ csA+24(FP), R10
	MOVQ b+32(FP), DI
	MOVQ ldb+40(FP), R11
	MOVQ c+48(FP), DX
	MOVQ ldc+56(FP), R12
	SHLQ $3, R9
	SHLQ $3, R10
	SHLQ $3, R11
	SHLQ $3, R12
	LEAQ (R9)(R9*2), R8
	ADDQ SI, R8 // row 3 of A

	VXORPD Y0, Y0, Y0
	VXORPD Y1, Y1, Y1
	VXORPD Y2, Y2, Y2
	VXORPD Y3, Y3, Y3
	VXORPD Y4, Y4, Y4
	VXORPD Y5, Y5, Y5
	VXORPD Y6, Y6, Y6
	VXORPD Y7, Y7, Y7
	VXORPD Y8, Y8, Y8
	VXORPD Y9, Y9, Y9
	VXORPD Y10, Y10, Y10
	VXORPD Y11, Y11, Y11

	TESTQ CX, CX
	JEQ   store

loop:
	VMOVUPD      (DI), Y12
	VMOVUPD      32(DI), Y13
	VBROADCASTSD (SI), Y14
	VBROADCASTSD (SI)(R9*1), Y15
	VFMADD231PD  Y12, Y14, Y0
	VFMADD231PD  Y13, Y14, Y1
	VFMADD231PD  Y12, Y15, Y2
	VFMADD231PD  Y13, Y15, Y3
	VBROADCASTSD (SI)(R9*2), Y14
	VBROADCASTSD (R8), Y15
	VFMADD231PD  Y12, Y14, Y4
	VFMADD231PD  Y13, Y14, Y5
	VFMADD231PD  Y12, Y15, Y6
	VFMADD231PD  Y13, Y15, Y7
	VBROADCASTSD (R8)(R9*1), Y14
	VBROADCASTSD (R8)(R9*2), Y15
	VFMADD231PD  Y12, Y14, Y8
	VFMADD231PD  Y13, Y14, Y9
	VFMADD231PD  Y12, Y15, Y10
	VFMADD231PD  Y13, Y15, Y11
	ADDQ         R10, SI
	ADDQ         R10, R8
	ADDQ         R11, DI
	DECQ         CX
	JNZ          loop

store:
	LEAQ    (R12)(R12*2), R13
	ADDQ    DX, R13 // row 3 of C
	LEAQ    (R13)(R12*1), R8 // row 4 of C
	MOVBLZX acc+64(FP), AX
	TESTL   AX, AX
	JEQ     overwrite
	ADD2ROWS(DX, Y0, Y1, Y2, Y3)
	ADD2ROWS_FAR(DX, Y4, Y5, R13, Y6, Y7)
	ADD2ROWS(R8, Y8, Y9, Y10, Y11)

overwrite:
	STORE2ROWS(DX, Y0, Y1, Y2, Y3)
	STORE2ROWS_FAR(DX, Y4, Y5, R13, Y6, Y7)
	STORE2ROWS(R8, Y8, Y9, Y10, Y11)
	VZEROUPPER
	RET

// Two rows of a 6×16 tile (AVX-512): as ADD2ROWS/STORE2ROWS with 8-wide
// halves 64 bytes apart.
#define ADD2ROWSZ(base, a0, a1, b0, b1) \
	VADDPD (base), a0, a0; VADDPD 64(base), a1, a1; \
	VADDPD (base)(R12*1), b0, b0; VADDPD 64(base)(R12*1), b1, b1
#define ADD2ROWSZ_FAR(base, a0, a1, base2, b0, b1) \
	VADDPD (base)(R12*2), a0, a0; VADDPD 64(base)(R12*2), a1, a1; \
	VADDPD (base2), b0, b0; VADDPD 64(base2), b1, b1
#define STORE2ROWSZ(base, a0, a1, b0, b1) \
	VMOVUPD a0, (base); VMOVUPD a1, 64(base); \
	VMOVUPD b0, (base)(R12*1); VMOVUPD b1, 64(base)(R12*1)
#define STORE2ROWSZ_FAR(base, a0, a1, base2, b0, b1) \
	VMOVUPD a0, (base)(R12*2); VMOVUPD a1, 64(base)(R12*2); \
	VMOVUPD b0, (base2); VMOVUPD b1, 64(base2)

// One p of the 6×16 tile: B(p, 0…7) at (DI), B(p, 8…15) at (DI)(BX*1).
#define STEP6X16 \
	VMOVUPD      (DI), Z12; \
	VMOVUPD      (DI)(BX*1), Z13; \
	VBROADCASTSD (SI), Z14; \
	VBROADCASTSD (SI)(R9*1), Z15; \
	VFMADD231PD  Z12, Z14, Z0; \
	VFMADD231PD  Z13, Z14, Z1; \
	VFMADD231PD  Z12, Z15, Z2; \
	VFMADD231PD  Z13, Z15, Z3; \
	VBROADCASTSD (SI)(R9*2), Z14; \
	VBROADCASTSD (R8), Z15; \
	VFMADD231PD  Z12, Z14, Z4; \
	VFMADD231PD  Z13, Z14, Z5; \
	VFMADD231PD  Z12, Z15, Z6; \
	VFMADD231PD  Z13, Z15, Z7; \
	VBROADCASTSD (R8)(R9*1), Z14; \
	VBROADCASTSD (R8)(R9*2), Z15; \
	VFMADD231PD  Z12, Z14, Z8; \
	VFMADD231PD  Z13, Z14, Z9; \
	VFMADD231PD  Z12, Z15, Z10; \
	VFMADD231PD  Z13, Z15, Z11; \
	ADDQ         R10, SI; \
	ADDQ         R10, R8; \
	ADDQ         R11, DI

// func gemmKernel6x16(k int, a *float64, rsA, csA int, b *float64, ldb, b2 int, c *float64, ldc int, acc bool)
//
// The 6×16 register tile on AVX-512: the computation of gemmKernel6x8 on
// sixteen columns, B(p, j) at b + (p·ldb + j)·8 for j < 8 and at
// b + (p·ldb + b2 + j − 8)·8 for 8 ≤ j < 16 (b2 = 8 for a row-major B,
// 8·kc for two adjacent packed panels). Twelve ZMM accumulators, each
// element the same sequence of fused multiply–adds as in the 6×8 kernel,
// so the two kernels give bit-identical tiles.
TEXT ·gemmKernel6x16(SB), NOSPLIT, $0-73
	GEMM16_ARGS
	LEAQ (R9)(R9*2), R8
	ADDQ SI, R8 // row 3 of A

	VPXORQ Z0, Z0, Z0
	VPXORQ Z1, Z1, Z1
	VPXORQ Z2, Z2, Z2
	VPXORQ Z3, Z3, Z3
	VPXORQ Z4, Z4, Z4
	VPXORQ Z5, Z5, Z5
	VPXORQ Z6, Z6, Z6
	VPXORQ Z7, Z7, Z7
	VPXORQ Z8, Z8, Z8
	VPXORQ Z9, Z9, Z9
	VPXORQ Z10, Z10, Z10
	VPXORQ Z11, Z11, Z11

	TESTQ CX, CX
	JEQ   store16
	TESTQ $1, CX
	JEQ   pair16
	STEP6X16
	DECQ  CX
	JEQ   store16

pair16:
	STEP6X16
	STEP6X16
	SUBQ $2, CX
	JNZ  pair16

store16:
	LEAQ    (R12)(R12*2), R13
	ADDQ    DX, R13 // row 3 of C
	LEAQ    (R13)(R12*1), R8 // row 4 of C
	MOVBLZX acc+72(FP), AX
	TESTL   AX, AX
	JEQ     overwrite16
	ADD2ROWSZ(DX, Z0, Z1, Z2, Z3)
	ADD2ROWSZ_FAR(DX, Z4, Z5, R13, Z6, Z7)
	ADD2ROWSZ(R8, Z8, Z9, Z10, Z11)

overwrite16:
	STORE2ROWSZ(DX, Z0, Z1, Z2, Z3)
	STORE2ROWSZ_FAR(DX, Z4, Z5, R13, Z6, Z7)
	STORE2ROWSZ(R8, Z8, Z9, Z10, Z11)
	VZEROUPPER
	RET

// func gemmKernel4x16(k int, a *float64, rsA, csA int, b *float64, ldb, b2 int, c *float64, ldc int, acc bool)
//
// gemmKernel6x16 on 4 rows: the short sliver at the end of a row block
// costs its own rows, not six (each element the same sequence of fused
// multiply–adds, so the tiles are bit-identical to the wider kernels').
TEXT ·gemmKernel4x16(SB), NOSPLIT, $0-73
	GEMM16_ARGS
	LEAQ (R9)(R9*2), R8
	ADDQ SI, R8 // row 3 of A
	VPXORQ Z0, Z0, Z0
	VPXORQ Z1, Z1, Z1
	VPXORQ Z2, Z2, Z2
	VPXORQ Z3, Z3, Z3
	VPXORQ Z4, Z4, Z4
	VPXORQ Z5, Z5, Z5
	VPXORQ Z6, Z6, Z6
	VPXORQ Z7, Z7, Z7
	TESTQ CX, CX
	JEQ   store4x16
loop4x16:
	VMOVUPD      (DI), Z12
	VMOVUPD      (DI)(BX*1), Z13
	VBROADCASTSD (SI), Z14
	VFMADD231PD  Z12, Z14, Z0
	VFMADD231PD  Z13, Z14, Z1
	VBROADCASTSD (SI)(R9*1), Z15
	VFMADD231PD  Z12, Z15, Z2
	VFMADD231PD  Z13, Z15, Z3
	VBROADCASTSD (SI)(R9*2), Z14
	VFMADD231PD  Z12, Z14, Z4
	VFMADD231PD  Z13, Z14, Z5
	VBROADCASTSD (R8), Z15
	VFMADD231PD  Z12, Z15, Z6
	VFMADD231PD  Z13, Z15, Z7
	ADDQ         R10, SI
	ADDQ         R10, R8
	ADDQ         R11, DI
	DECQ         CX
	JNZ          loop4x16
store4x16:
	LEAQ    (R12)(R12*2), R13
	ADDQ    DX, R13 // row 3 of C
	MOVBLZX acc+72(FP), AX
	TESTL   AX, AX
	JEQ     overwrite4x16
	VADDPD (DX), Z0, Z0
	VADDPD 64(DX), Z1, Z1
	VADDPD (DX)(R12*1), Z2, Z2
	VADDPD 64(DX)(R12*1), Z3, Z3
	VADDPD (DX)(R12*2), Z4, Z4
	VADDPD 64(DX)(R12*2), Z5, Z5
	VADDPD (R13), Z6, Z6
	VADDPD 64(R13), Z7, Z7
overwrite4x16:
	VMOVUPD Z0, (DX)
	VMOVUPD Z1, 64(DX)
	VMOVUPD Z2, (DX)(R12*1)
	VMOVUPD Z3, 64(DX)(R12*1)
	VMOVUPD Z4, (DX)(R12*2)
	VMOVUPD Z5, 64(DX)(R12*2)
	VMOVUPD Z6, (R13)
	VMOVUPD Z7, 64(R13)
	VZEROUPPER
	RET

// func gemmKernel2x16(k int, a *float64, rsA, csA int, b *float64, ldb, b2 int, c *float64, ldc int, acc bool)
//
// gemmKernel6x16 on 2 rows: the short sliver at the end of a row block
// costs its own rows, not six (each element the same sequence of fused
// multiply–adds, so the tiles are bit-identical to the wider kernels').
TEXT ·gemmKernel2x16(SB), NOSPLIT, $0-73
	GEMM16_ARGS
	VPXORQ Z0, Z0, Z0
	VPXORQ Z1, Z1, Z1
	VPXORQ Z2, Z2, Z2
	VPXORQ Z3, Z3, Z3
	TESTQ CX, CX
	JEQ   store2x16
loop2x16:
	VMOVUPD      (DI), Z12
	VMOVUPD      (DI)(BX*1), Z13
	VBROADCASTSD (SI), Z14
	VFMADD231PD  Z12, Z14, Z0
	VFMADD231PD  Z13, Z14, Z1
	VBROADCASTSD (SI)(R9*1), Z15
	VFMADD231PD  Z12, Z15, Z2
	VFMADD231PD  Z13, Z15, Z3
	ADDQ         R10, SI
	ADDQ         R11, DI
	DECQ         CX
	JNZ          loop2x16
store2x16:
	MOVBLZX acc+72(FP), AX
	TESTL   AX, AX
	JEQ     overwrite2x16
	VADDPD (DX), Z0, Z0
	VADDPD 64(DX), Z1, Z1
	VADDPD (DX)(R12*1), Z2, Z2
	VADDPD 64(DX)(R12*1), Z3, Z3
overwrite2x16:
	VMOVUPD Z0, (DX)
	VMOVUPD Z1, 64(DX)
	VMOVUPD Z2, (DX)(R12*1)
	VMOVUPD Z3, 64(DX)(R12*1)
	VZEROUPPER
	RET

// One p of the 8×16 tile: rows 0–2 of A at SI, rows 3–5 at R8, rows 6–7 at
// R13; B(p, 0…7) at (DI), B(p, 8…15) at (DI)(BX*1).
#define STEP8X16 \
	VMOVUPD      (DI), Z16; \
	VMOVUPD      (DI)(BX*1), Z17; \
	VBROADCASTSD (SI), Z18; \
	VBROADCASTSD (SI)(R9*1), Z19; \
	VFMADD231PD  Z16, Z18, Z0; \
	VFMADD231PD  Z17, Z18, Z1; \
	VFMADD231PD  Z16, Z19, Z2; \
	VFMADD231PD  Z17, Z19, Z3; \
	VBROADCASTSD (SI)(R9*2), Z18; \
	VBROADCASTSD (R8), Z19; \
	VFMADD231PD  Z16, Z18, Z4; \
	VFMADD231PD  Z17, Z18, Z5; \
	VFMADD231PD  Z16, Z19, Z6; \
	VFMADD231PD  Z17, Z19, Z7; \
	VBROADCASTSD (R8)(R9*1), Z18; \
	VBROADCASTSD (R8)(R9*2), Z19; \
	VFMADD231PD  Z16, Z18, Z8; \
	VFMADD231PD  Z17, Z18, Z9; \
	VFMADD231PD  Z16, Z19, Z10; \
	VFMADD231PD  Z17, Z19, Z11; \
	VBROADCASTSD (R13), Z18; \
	VBROADCASTSD (R13)(R9*1), Z19; \
	VFMADD231PD  Z16, Z18, Z12; \
	VFMADD231PD  Z17, Z18, Z13; \
	VFMADD231PD  Z16, Z19, Z14; \
	VFMADD231PD  Z17, Z19, Z15; \
	ADDQ         R10, SI; \
	ADDQ         R10, R8; \
	ADDQ         R10, R13; \
	ADDQ         R11, DI

// func gemmKernel8x16(k int, a *float64, rsA, csA int, b *float64, ldb, b2 int, c *float64, ldc int, acc bool)
//
// gemmKernel6x16 on eight rows: sixteen ZMM accumulators (Z0–Z15), the B
// row and the broadcasts in Z16–Z19, which only EVEX encodings reach. A
// row block of a power-of-two batch (32 rows on two cores, 16, 64, …) is
// then whole tiles, where six-row tiles leave a two-row sliver that runs
// at a third of the speed. Each element is the same sequence of fused
// multiply–adds as in the other kernels, so the tiles are bit-identical.
// VZEROUPPER clears the upper halves of Z0–Z15; Z16–Z31 have no SSE
// aliases and cause no transition penalty.
TEXT ·gemmKernel8x16(SB), NOSPLIT, $0-73
	GEMM16_ARGS
	LEAQ (R9)(R9*2), R8
	LEAQ (SI)(R8*2), R13 // row 6 of A
	ADDQ SI, R8          // row 3 of A

	VPXORQ Z0, Z0, Z0
	VPXORQ Z1, Z1, Z1
	VPXORQ Z2, Z2, Z2
	VPXORQ Z3, Z3, Z3
	VPXORQ Z4, Z4, Z4
	VPXORQ Z5, Z5, Z5
	VPXORQ Z6, Z6, Z6
	VPXORQ Z7, Z7, Z7
	VPXORQ Z8, Z8, Z8
	VPXORQ Z9, Z9, Z9
	VPXORQ Z10, Z10, Z10
	VPXORQ Z11, Z11, Z11
	VPXORQ Z12, Z12, Z12
	VPXORQ Z13, Z13, Z13
	VPXORQ Z14, Z14, Z14
	VPXORQ Z15, Z15, Z15

	TESTQ CX, CX
	JEQ   store8x16
	TESTQ $1, CX
	JEQ   pair8x16
	STEP8X16
	DECQ  CX
	JEQ   store8x16

pair8x16:
	STEP8X16
	STEP8X16
	SUBQ $2, CX
	JNZ  pair8x16

store8x16:
	LEAQ    (R12)(R12*2), AX
	LEAQ    (DX)(AX*1), R13 // row 3 of C
	LEAQ    (R13)(AX*1), R8 // row 6 of C
	LEAQ    (R13)(R12*1), SI // row 4 of C
	MOVBLZX acc+72(FP), AX
	TESTL   AX, AX
	JEQ     overwrite8x16
	ADD2ROWSZ(DX, Z0, Z1, Z2, Z3)
	ADD2ROWSZ_FAR(DX, Z4, Z5, R13, Z6, Z7)
	ADD2ROWSZ(SI, Z8, Z9, Z10, Z11)
	ADD2ROWSZ(R8, Z12, Z13, Z14, Z15)

overwrite8x16:
	STORE2ROWSZ(DX, Z0, Z1, Z2, Z3)
	STORE2ROWSZ_FAR(DX, Z4, Z5, R13, Z6, Z7)
	STORE2ROWSZ(SI, Z8, Z9, Z10, Z11)
	STORE2ROWSZ(R8, Z12, Z13, Z14, Z15)
	VZEROUPPER
	RET

// func gqaSumsAVX512(vs *float64, stride, n, m int, coef *float64, out *[7]*float64)
//
// gq-adaptive's Gauss-stage sums over m components (m a multiple of 8) of
// n stored node products, node k at vs + k·stride elements: with
// coef[6k…6k+5] = (w, wk, c0, c1, c2, c3) of node k, out[0…6] receive
// Σ w·g, Σ wk·g, Σ |w·g|, Σ c0·g, …, Σ c3·g. Each product is rounded and
// then added (no fused multiply–add), in node order, the first node's
// product stored as is: the operations of gqaStoredSums.apply in Go, so
// the sums are bit-identical to it (a NaN stays a NaN, its payload may
// differ: the order of an addition's operands is not fixed in Go).
TEXT ·gqaSumsAVX512(SB), NOSPLIT, $0-48
	MOVQ vs+0(FP), SI
	MOVQ stride+8(FP), R8
	SHLQ $3, R8
	MOVQ n+16(FP), R9
	MOVQ m+24(FP), CX
	SHLQ $3, CX
	MOVQ coef+32(FP), DX
	MOVQ out+40(FP), DI
	MOVQ $0x7fffffffffffffff, AX
	VPBROADCASTQ AX, Z31 // |x| mask
	XORQ R10, R10        // byte offset of the 8 components

sumsj:
	LEAQ (SI)(R10*1), R11
	MOVQ DX, R12
	VMOVUPD      (R11), Z7
	VBROADCASTSD 0(R12), Z9
	VMULPD       Z7, Z9, Z0
	VANDPD       Z31, Z0, Z2
	VBROADCASTSD 8(R12), Z9
	VMULPD       Z7, Z9, Z1
	VBROADCASTSD 16(R12), Z9
	VMULPD       Z7, Z9, Z3
	VBROADCASTSD 24(R12), Z9
	VMULPD       Z7, Z9, Z4
	VBROADCASTSD 32(R12), Z9
	VMULPD       Z7, Z9, Z5
	VBROADCASTSD 40(R12), Z9
	VMULPD       Z7, Z9, Z6
	MOVQ         R9, R13
	DECQ         R13
	JLE          sumsstore

sumsk:
	ADDQ         R8, R11
	ADDQ         $48, R12
	VMOVUPD      (R11), Z7
	VBROADCASTSD 0(R12), Z9
	VMULPD       Z7, Z9, Z8
	VADDPD       Z8, Z0, Z0
	VANDPD       Z31, Z8, Z8
	VADDPD       Z8, Z2, Z2
	VBROADCASTSD 8(R12), Z9
	VMULPD       Z7, Z9, Z8
	VADDPD       Z8, Z1, Z1
	VBROADCASTSD 16(R12), Z9
	VMULPD       Z7, Z9, Z8
	VADDPD       Z8, Z3, Z3
	VBROADCASTSD 24(R12), Z9
	VMULPD       Z7, Z9, Z8
	VADDPD       Z8, Z4, Z4
	VBROADCASTSD 32(R12), Z9
	VMULPD       Z7, Z9, Z8
	VADDPD       Z8, Z5, Z5
	VBROADCASTSD 40(R12), Z9
	VMULPD       Z7, Z9, Z8
	VADDPD       Z8, Z6, Z6
	DECQ         R13
	JNZ          sumsk

sumsstore:
	MOVQ    0(DI), AX
	VMOVUPD Z0, (AX)(R10*1)
	MOVQ    8(DI), AX
	VMOVUPD Z1, (AX)(R10*1)
	MOVQ    16(DI), AX
	VMOVUPD Z2, (AX)(R10*1)
	MOVQ    24(DI), AX
	VMOVUPD Z3, (AX)(R10*1)
	MOVQ    32(DI), AX
	VMOVUPD Z4, (AX)(R10*1)
	MOVQ    40(DI), AX
	VMOVUPD Z5, (AX)(R10*1)
	MOVQ    48(DI), AX
	VMOVUPD Z6, (AX)(R10*1)
	ADDQ    $64, R10
	CMPQ    R10, CX
	JLT     sumsj
	VZEROUPPER
	RET

// func gqaNodeAVX512(v *float64, m int, coef *float64, out *[7]*float64, first bool)
//
// gqaNodeSums.apply on m components (a multiple of 8): with coef = (w,
// wk, c0, c1, c2, c3), out[0…6] (ig, sk, ab, t0…t3) receive w·g, wk·g,
// |w·g|, c0·g, …, c3·g (first) or have them added, each product rounded
// before the addition, as in Go (bit-identical up to NaN payloads).
TEXT ·gqaNodeAVX512(SB), NOSPLIT, $0-33
	MOVQ v+0(FP), SI
	MOVQ m+8(FP), CX
	SHLQ $3, CX
	MOVQ coef+16(FP), DX
	MOVQ out+24(FP), DI
	MOVBLZX first+32(FP), BX
	MOVQ $0x7fffffffffffffff, AX
	VPBROADCASTQ AX, Z31
	VBROADCASTSD 0(DX), Z10
	VBROADCASTSD 8(DX), Z11
	VBROADCASTSD 16(DX), Z12
	VBROADCASTSD 24(DX), Z13
	VBROADCASTSD 32(DX), Z14
	VBROADCASTSD 40(DX), Z15
	MOVQ 0(DI), R8
	MOVQ 8(DI), R9
	MOVQ 16(DI), R10
	MOVQ 24(DI), R11
	MOVQ 32(DI), R12
	MOVQ 40(DI), R13
	MOVQ 48(DI), DX
	XORQ AX, AX
	TESTL BX, BX
	JNZ  nodeset

nodeadd:
	VMOVUPD (SI)(AX*1), Z7
	VMULPD  Z7, Z10, Z0
	VADDPD  (R8)(AX*1), Z0, Z1
	VMOVUPD Z1, (R8)(AX*1)
	VANDPD  Z31, Z0, Z0
	VADDPD  (R10)(AX*1), Z0, Z0
	VMOVUPD Z0, (R10)(AX*1)
	VMULPD  Z7, Z11, Z0
	VADDPD  (R9)(AX*1), Z0, Z0
	VMOVUPD Z0, (R9)(AX*1)
	VMULPD  Z7, Z12, Z0
	VADDPD  (R11)(AX*1), Z0, Z0
	VMOVUPD Z0, (R11)(AX*1)
	VMULPD  Z7, Z13, Z0
	VADDPD  (R12)(AX*1), Z0, Z0
	VMOVUPD Z0, (R12)(AX*1)
	VMULPD  Z7, Z14, Z0
	VADDPD  (R13)(AX*1), Z0, Z0
	VMOVUPD Z0, (R13)(AX*1)
	VMULPD  Z7, Z15, Z0
	VADDPD  (DX)(AX*1), Z0, Z0
	VMOVUPD Z0, (DX)(AX*1)
	ADDQ    $64, AX
	CMPQ    AX, CX
	JLT     nodeadd
	VZEROUPPER
	RET

nodeset:
	VMOVUPD (SI)(AX*1), Z7
	VMULPD  Z7, Z10, Z0
	VMOVUPD Z0, (R8)(AX*1)
	VANDPD  Z31, Z0, Z0
	VMOVUPD Z0, (R10)(AX*1)
	VMULPD  Z7, Z11, Z0
	VMOVUPD Z0, (R9)(AX*1)
	VMULPD  Z7, Z12, Z0
	VMOVUPD Z0, (R11)(AX*1)
	VMULPD  Z7, Z13, Z0
	VMOVUPD Z0, (R12)(AX*1)
	VMULPD  Z7, Z14, Z0
	VMOVUPD Z0, (R13)(AX*1)
	VMULPD  Z7, Z15, Z0
	VMOVUPD Z0, (DX)(AX*1)
	ADDQ    $64, AX
	CMPQ    AX, CX
	JLT     nodeset
	VZEROUPPER
	RET
