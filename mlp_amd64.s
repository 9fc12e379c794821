//go:build amd64 && !purego

#include "textflag.h"

// Constants of the activation kernels, each repeated in the four lanes of
// a YMM register: masks, the Cody–Waite split of ln 2, the rounding
// constant 1.5·2⁵², and the coefficients P (exp) and Q (atanh) of mlp.go.
DATA actc<>+0(SB)/8, $0x7fffffffffffffff
DATA actc<>+8(SB)/8, $0x7fffffffffffffff
DATA actc<>+16(SB)/8, $0x7fffffffffffffff
DATA actc<>+24(SB)/8, $0x7fffffffffffffff
DATA actc<>+32(SB)/8, $0x8000000000000000
DATA actc<>+40(SB)/8, $0x8000000000000000
DATA actc<>+48(SB)/8, $0x8000000000000000
DATA actc<>+56(SB)/8, $0x8000000000000000
DATA actc<>+64(SB)/8, $0x3ff0000000000000
DATA actc<>+72(SB)/8, $0x3ff0000000000000
DATA actc<>+80(SB)/8, $0x3ff0000000000000
DATA actc<>+88(SB)/8, $0x3ff0000000000000
DATA actc<>+96(SB)/8, $0x4000000000000000
DATA actc<>+104(SB)/8, $0x4000000000000000
DATA actc<>+112(SB)/8, $0x4000000000000000
DATA actc<>+120(SB)/8, $0x4000000000000000
DATA actc<>+128(SB)/8, $0x3fd0000000000000
DATA actc<>+136(SB)/8, $0x3fd0000000000000
DATA actc<>+144(SB)/8, $0x3fd0000000000000
DATA actc<>+152(SB)/8, $0x3fd0000000000000
DATA actc<>+160(SB)/8, $0x4036000000000000
DATA actc<>+168(SB)/8, $0x4036000000000000
DATA actc<>+176(SB)/8, $0x4036000000000000
DATA actc<>+184(SB)/8, $0x4036000000000000
DATA actc<>+192(SB)/8, $0x4087700000000000
DATA actc<>+200(SB)/8, $0x4087700000000000
DATA actc<>+208(SB)/8, $0x4087700000000000
DATA actc<>+216(SB)/8, $0x4087700000000000
DATA actc<>+224(SB)/8, $0xc000000000000000
DATA actc<>+232(SB)/8, $0xc000000000000000
DATA actc<>+240(SB)/8, $0xc000000000000000
DATA actc<>+248(SB)/8, $0xc000000000000000
DATA actc<>+256(SB)/8, $0x3fe0000000000000
DATA actc<>+264(SB)/8, $0x3fe0000000000000
DATA actc<>+272(SB)/8, $0x3fe0000000000000
DATA actc<>+280(SB)/8, $0x3fe0000000000000
DATA actc<>+288(SB)/8, $0x3ff71547652b82fe
DATA actc<>+296(SB)/8, $0x3ff71547652b82fe
DATA actc<>+304(SB)/8, $0x3ff71547652b82fe
DATA actc<>+312(SB)/8, $0x3ff71547652b82fe
DATA actc<>+320(SB)/8, $0x4338000000000000
DATA actc<>+328(SB)/8, $0x4338000000000000
DATA actc<>+336(SB)/8, $0x4338000000000000
DATA actc<>+344(SB)/8, $0x4338000000000000
DATA actc<>+352(SB)/8, $0xbfe62e42fee00000
DATA actc<>+360(SB)/8, $0xbfe62e42fee00000
DATA actc<>+368(SB)/8, $0xbfe62e42fee00000
DATA actc<>+376(SB)/8, $0xbfe62e42fee00000
DATA actc<>+384(SB)/8, $0xbdea39ef35793c76
DATA actc<>+392(SB)/8, $0xbdea39ef35793c76
DATA actc<>+400(SB)/8, $0xbdea39ef35793c76
DATA actc<>+408(SB)/8, $0xbdea39ef35793c76
DATA actc<>+416(SB)/8, $0x00000000000003ff
DATA actc<>+424(SB)/8, $0x00000000000003ff
DATA actc<>+432(SB)/8, $0x00000000000003ff
DATA actc<>+440(SB)/8, $0x00000000000003ff
DATA actc<>+448(SB)/8, $0x3fe0000000000001
DATA actc<>+456(SB)/8, $0x3fe0000000000001
DATA actc<>+464(SB)/8, $0x3fe0000000000001
DATA actc<>+472(SB)/8, $0x3fe0000000000001
DATA actc<>+480(SB)/8, $0x3fc5555555555556
DATA actc<>+488(SB)/8, $0x3fc5555555555556
DATA actc<>+496(SB)/8, $0x3fc5555555555556
DATA actc<>+504(SB)/8, $0x3fc5555555555556
DATA actc<>+512(SB)/8, $0x3fa5555555553d63
DATA actc<>+520(SB)/8, $0x3fa5555555553d63
DATA actc<>+528(SB)/8, $0x3fa5555555553d63
DATA actc<>+536(SB)/8, $0x3fa5555555553d63
DATA actc<>+544(SB)/8, $0x3f811111111109b3
DATA actc<>+552(SB)/8, $0x3f811111111109b3
DATA actc<>+560(SB)/8, $0x3f811111111109b3
DATA actc<>+568(SB)/8, $0x3f811111111109b3
DATA actc<>+576(SB)/8, $0x3f56c16c1788bd90
DATA actc<>+584(SB)/8, $0x3f56c16c1788bd90
DATA actc<>+592(SB)/8, $0x3f56c16c1788bd90
DATA actc<>+600(SB)/8, $0x3f56c16c1788bd90
DATA actc<>+608(SB)/8, $0x3f2a01a01a7c41d5
DATA actc<>+616(SB)/8, $0x3f2a01a01a7c41d5
DATA actc<>+624(SB)/8, $0x3f2a01a01a7c41d5
DATA actc<>+632(SB)/8, $0x3f2a01a01a7c41d5
DATA actc<>+640(SB)/8, $0x3efa019b90d2ae7a
DATA actc<>+648(SB)/8, $0x3efa019b90d2ae7a
DATA actc<>+656(SB)/8, $0x3efa019b90d2ae7a
DATA actc<>+664(SB)/8, $0x3efa019b90d2ae7a
DATA actc<>+672(SB)/8, $0x3ec71de0dae63bb3
DATA actc<>+680(SB)/8, $0x3ec71de0dae63bb3
DATA actc<>+688(SB)/8, $0x3ec71de0dae63bb3
DATA actc<>+696(SB)/8, $0x3ec71de0dae63bb3
DATA actc<>+704(SB)/8, $0x3e9289185613a3d6
DATA actc<>+712(SB)/8, $0x3e9289185613a3d6
DATA actc<>+720(SB)/8, $0x3e9289185613a3d6
DATA actc<>+728(SB)/8, $0x3e9289185613a3d6
DATA actc<>+736(SB)/8, $0x3e5af38a9b0ec855
DATA actc<>+744(SB)/8, $0x3e5af38a9b0ec855
DATA actc<>+752(SB)/8, $0x3e5af38a9b0ec855
DATA actc<>+760(SB)/8, $0x3e5af38a9b0ec855
DATA actc<>+768(SB)/8, $0x3fd5555555555555
DATA actc<>+776(SB)/8, $0x3fd5555555555555
DATA actc<>+784(SB)/8, $0x3fd5555555555555
DATA actc<>+792(SB)/8, $0x3fd5555555555555
DATA actc<>+800(SB)/8, $0x3fc999999999a3dd
DATA actc<>+808(SB)/8, $0x3fc999999999a3dd
DATA actc<>+816(SB)/8, $0x3fc999999999a3dd
DATA actc<>+824(SB)/8, $0x3fc999999999a3dd
DATA actc<>+832(SB)/8, $0x3fc24924923d44c6
DATA actc<>+840(SB)/8, $0x3fc24924923d44c6
DATA actc<>+848(SB)/8, $0x3fc24924923d44c6
DATA actc<>+856(SB)/8, $0x3fc24924923d44c6
DATA actc<>+864(SB)/8, $0x3fbc71c727143318
DATA actc<>+872(SB)/8, $0x3fbc71c727143318
DATA actc<>+880(SB)/8, $0x3fbc71c727143318
DATA actc<>+888(SB)/8, $0x3fbc71c727143318
DATA actc<>+896(SB)/8, $0x3fb745cf0b0e03bd
DATA actc<>+904(SB)/8, $0x3fb745cf0b0e03bd
DATA actc<>+912(SB)/8, $0x3fb745cf0b0e03bd
DATA actc<>+920(SB)/8, $0x3fb745cf0b0e03bd
DATA actc<>+928(SB)/8, $0x3fb3b18b294bebf9
DATA actc<>+936(SB)/8, $0x3fb3b18b294bebf9
DATA actc<>+944(SB)/8, $0x3fb3b18b294bebf9
DATA actc<>+952(SB)/8, $0x3fb3b18b294bebf9
DATA actc<>+960(SB)/8, $0x3fb10ac75dc602b1
DATA actc<>+968(SB)/8, $0x3fb10ac75dc602b1
DATA actc<>+976(SB)/8, $0x3fb10ac75dc602b1
DATA actc<>+984(SB)/8, $0x3fb10ac75dc602b1
DATA actc<>+992(SB)/8, $0x3faeb905e8575054
DATA actc<>+1000(SB)/8, $0x3faeb905e8575054
DATA actc<>+1008(SB)/8, $0x3faeb905e8575054
DATA actc<>+1016(SB)/8, $0x3faeb905e8575054
DATA actc<>+1024(SB)/8, $0x3fa687a6e7c95176
DATA actc<>+1032(SB)/8, $0x3fa687a6e7c95176
DATA actc<>+1040(SB)/8, $0x3fa687a6e7c95176
DATA actc<>+1048(SB)/8, $0x3fa687a6e7c95176
DATA actc<>+1056(SB)/8, $0x3fb4b0a26c5f2aef
DATA actc<>+1064(SB)/8, $0x3fb4b0a26c5f2aef
DATA actc<>+1072(SB)/8, $0x3fb4b0a26c5f2aef
DATA actc<>+1080(SB)/8, $0x3fb4b0a26c5f2aef
GLOBL actc<>(SB), RODATA|NOPTR, $1088

#define C_ABSMASK actc<>+0(SB)
#define C_SIGNMASK actc<>+32(SB)
#define C_ONE actc<>+64(SB)
#define C_TWO actc<>+96(SB)
#define C_QUARTER actc<>+128(SB)
#define C_TANHSAT actc<>+160(SB)
#define C_SPMAX actc<>+192(SB)
#define C_MTWO actc<>+224(SB)
#define C_HALF actc<>+256(SB)
#define C_LOG2E actc<>+288(SB)
#define C_MAGIC actc<>+320(SB)
#define C_MLN2HI actc<>+352(SB)
#define C_MLN2LO actc<>+384(SB)
#define C_BIAS1023 actc<>+416(SB)
#define C_P0 actc<>+448(SB)
#define C_P1 actc<>+480(SB)
#define C_P2 actc<>+512(SB)
#define C_P3 actc<>+544(SB)
#define C_P4 actc<>+576(SB)
#define C_P5 actc<>+608(SB)
#define C_P6 actc<>+640(SB)
#define C_P7 actc<>+672(SB)
#define C_P8 actc<>+704(SB)
#define C_P9 actc<>+736(SB)
#define C_Q0 actc<>+768(SB)
#define C_Q1 actc<>+800(SB)
#define C_Q2 actc<>+832(SB)
#define C_Q3 actc<>+864(SB)
#define C_Q4 actc<>+896(SB)
#define C_Q5 actc<>+928(SB)
#define C_Q6 actc<>+960(SB)
#define C_Q7 actc<>+992(SB)
#define C_Q8 actc<>+1024(SB)
#define C_Q9 actc<>+1056(SB)

// LINEAR sets dst = c0 + x·c1, a first-degree term of Estrin's scheme.
#define LINEAR(c0, c1, x, dst) VMOVUPD c0, dst; VFMADD231PD c1, x, dst

// EXPM1_REDUCE: from y = Y1 (≤ 0), t = y·log₂e + 1.5·2⁵² in Y3 (its low
// mantissa bits hold k = round(y/ln 2)), r = y − k·ln 2 (Cody–Waite) in
// Y4, and expm1(r) = r + r²·P(r) (Estrin's scheme) in Y2; Y5–Y9 clobbered.
#define EXPM1_REDUCE \
	VMOVUPD C_MAGIC, Y3; \
	VFMADD231PD C_LOG2E, Y1, Y3; \
	VSUBPD C_MAGIC, Y3, Y5; \
	VMOVAPD Y1, Y4; \
	VFMADD231PD C_MLN2HI, Y5, Y4; \
	VFMADD231PD C_MLN2LO, Y5, Y4; \
	VMULPD Y4, Y4, Y6; \
	VMULPD Y6, Y6, Y7; \
	LINEAR(C_P8, C_P9, Y4, Y5); \
	LINEAR(C_P6, C_P7, Y4, Y8); \
	LINEAR(C_P4, C_P5, Y4, Y9); \
	VFMADD231PD Y8, Y6, Y9; \
	LINEAR(C_P2, C_P3, Y4, Y8); \
	LINEAR(C_P0, C_P1, Y4, Y2); \
	VFMADD231PD Y8, Y6, Y2; \
	VFMADD231PD Y9, Y7, Y2; \
	VMULPD Y7, Y7, Y7; \
	VFMADD231PD Y5, Y7, Y2; \
	VMULPD Y6, Y2, Y2; \
	VADDPD Y4, Y2, Y2

// func activationRowAVX(row, drow, bias *float64, n, rows, mode int)
//
// For rows consecutive rows of n elements (n a multiple of 4) and j < n,
// u = row[j] + bias[j], four lanes at a time
// with fused multiply–adds, by the formulas of mlp.go:
//   - mode 0 (tanhFast): row[j] = h = tanh(u), drow[j] = 1 − h²;
//   - mode 1 (expNegAbs, softplusFromE): row[j] = softplus(u), drow[j] = σ(u);
//   - mode 2: row[j] = s = σ(u), drow[j] = s(1 − s).
// drow may be nil.
TEXT ·activationRowAVX(SB), NOSPLIT, $0-48
	MOVQ n+24(FP), R9
	SHRQ $2, R9 // iterations per row
	JEQ  done
	MOVQ rows+32(FP), R8
	TESTQ R8, R8
	JEQ  done
	MOVQ mode+40(FP), DX
	MOVQ row+0(FP), SI
	MOVQ drow+8(FP), DI
	MOVQ bias+16(FP), R10
rows:
	MOVQ R9, CX
	MOVQ R10, BX // the bias restarts with every row
loop:
	VMOVUPD (SI), Y0
	VADDPD  (BX), Y0, Y0 // u
	VANDPD  C_ABSMASK, Y0, Y1   // |u|
	TESTQ   DX, DX
	JNE     expneg
	VMOVUPD C_TANHSAT, Y2
	VMINPD  Y1, Y2, Y1   // min(|u|, 22), NaN kept
	VMULPD  C_MTWO, Y1, Y1   // y = −2·min(|u|, 22)
	EXPM1_REDUCE
	VPADDQ C_BIAS1023, Y3, Y5 // 2ᵏ: (bits(t) + 1023) << 52, the exponent field
	VPSLLQ $52, Y5, Y5
	VSUBPD C_ONE, Y5, Y6 // 2ᵏ − 1 (exact)
	VFMADD231PD Y2, Y5, Y6 // m = 2ᵏ·expm1(r) + (2ᵏ − 1) = expm1(y)
	VADDPD C_TWO, Y6, Y7 // 2 + m
	VXORPD Y8, Y8, Y8
	VSUBPD Y6, Y8, Y6
	VDIVPD Y7, Y6, Y6 // |tanh u| = −m/(2 + m)
	VANDPD C_SIGNMASK, Y0, Y0
	VORPD Y0, Y6, Y6 // h = copysign(|tanh u|, u)
	VMOVUPD C_ONE, Y7
	VFNMADD231PD Y6, Y6, Y7 // 1 − h²
	JMP store
expneg:
	VMOVUPD C_SPMAX, Y2
	VMINPD Y1, Y2, Y1 // min(|u|, 750), NaN kept
	VXORPD Y2, Y2, Y2
	VSUBPD Y1, Y2, Y1 // y = −min(|u|, 750)
	EXPM1_REDUCE
	VADDPD C_ONE, Y2, Y2 // exp(r)
	VSUBPD C_MAGIC, Y3, Y5 // k
	VMULPD C_HALF, Y5, Y6
	VROUNDPD $1, Y6, Y6 // k₁ = ⌊k/2⌋: 2ᵏ as two normal factors 2^k₁·2^(k−k₁)
	VSUBPD Y6, Y5, Y5
	VADDPD C_MAGIC, Y6, Y6
	VADDPD C_MAGIC, Y5, Y5
	VPADDQ C_BIAS1023, Y6, Y6 // 2ᵏ: (bits(t) + 1023) << 52, the exponent field
	VPSLLQ $52, Y6, Y6
	VPADDQ C_BIAS1023, Y5, Y5 // 2ᵏ: (bits(t) + 1023) << 52, the exponent field
	VPSLLQ $52, Y5, Y5
	VMULPD Y6, Y2, Y2
	VMULPD Y5, Y2, Y2 // e = e^−|u|, rounded once even when subnormal
	VADDPD C_ONE, Y2, Y13 // 1 + e
	VMOVUPD C_ONE, Y12
	VBLENDVPD Y0, Y2, Y12, Y12 // u < 0 ? e : 1
	VDIVPD Y13, Y12, Y12 // σ(u)
	CMPQ DX, $1
	JNE sigmoid
	VADDPD Y2, Y2, Y3
	VADDPD C_TWO, Y2, Y4
	VDIVPD Y4, Y3, Y3 // t = 2e/(2 + e); log1p(e) = 2·atanh(t/2)
	VMULPD Y3, Y3, Y4
	VMULPD C_QUARTER, Y4, Y4 // x = (t/2)²
	VMULPD Y4, Y4, Y5 // x²
	VMULPD Y5, Y5, Y6 // x⁴
	LINEAR(C_Q8, C_Q9, Y4, Y7)
	LINEAR(C_Q6, C_Q7, Y4, Y8)
	LINEAR(C_Q4, C_Q5, Y4, Y9)
	VFMADD231PD Y8, Y5, Y9
	LINEAR(C_Q2, C_Q3, Y4, Y8)
	LINEAR(C_Q0, C_Q1, Y4, Y10)
	VFMADD231PD Y8, Y5, Y10
	VFMADD231PD Y9, Y6, Y10
	VMULPD Y6, Y6, Y6 // x⁸
	VFMADD231PD Y7, Y6, Y10 // Q(x), Estrin's scheme
	VMULPD Y4, Y10, Y10
	VFMADD213PD Y3, Y3, Y10 // log1p(e) = t + t·x·Q(x)
	VXORPD Y6, Y6, Y6
	VBLENDVPD Y0, Y6, Y0, Y6 // max(u, 0) by the sign bit
	VADDPD Y10, Y6, Y6 // softplus(u)
	VMOVAPD Y12, Y7
	JMP store
sigmoid:
	VMOVAPD Y12, Y6
	VMOVUPD C_ONE, Y7
	VSUBPD Y12, Y7, Y7 // 1 − σ
	VMULPD Y12, Y7, Y7 // σ(1 − σ)
store:
	VMOVUPD Y6, (SI)
	TESTQ   DI, DI
	JEQ     next
	VMOVUPD Y7, (DI)
	ADDQ    $32, DI
next:
	ADDQ $32, SI
	ADDQ $32, BX
	DECQ CX
	JNZ  loop
	DECQ R8
	JNZ  rows
done:
	VZEROUPPER
	RET

// LINEAR512 is LINEAR on ZMM registers, the coefficients broadcast from the
// constant table.
#define LINEAR512(c0, c1, x, dst) VBROADCASTSD c0, dst; VFMADD231PD.BCST c1, x, dst

#define EXPM1_REDUCE512 \
	VBROADCASTSD C_MAGIC, Z3; \
	VFMADD231PD.BCST C_LOG2E, Z1, Z3; \
	VSUBPD.BCST C_MAGIC, Z3, Z5; \
	VMOVAPD Z1, Z4; \
	VFMADD231PD.BCST C_MLN2HI, Z5, Z4; \
	VFMADD231PD.BCST C_MLN2LO, Z5, Z4; \
	VMULPD Z4, Z4, Z6; \
	VMULPD Z6, Z6, Z7; \
	LINEAR512(C_P8, C_P9, Z4, Z5); \
	LINEAR512(C_P6, C_P7, Z4, Z8); \
	LINEAR512(C_P4, C_P5, Z4, Z9); \
	VFMADD231PD Z8, Z6, Z9; \
	LINEAR512(C_P2, C_P3, Z4, Z8); \
	LINEAR512(C_P0, C_P1, Z4, Z2); \
	VFMADD231PD Z8, Z6, Z2; \
	VFMADD231PD Z9, Z7, Z2; \
	VMULPD Z7, Z7, Z7; \
	VFMADD231PD Z5, Z7, Z2; \
	VMULPD Z6, Z2, Z2; \
	VADDPD Z4, Z2, Z2

// func activationRowAVX512(row, drow, bias *float64, n, rows, mode int)
//
// activationRowAVX on eight lanes (AVX-512 F and DQ), for n a multiple of 8:
// the same operations in the same order on every lane, the blends done by
// the sign-bit mask (VPMOVQ2M), ⌊k/2⌋ by VRNDSCALEPD, so that both kernels
// give bit-identical rows.
TEXT ·activationRowAVX512(SB), NOSPLIT, $0-48
	MOVQ n+24(FP), R9
	SHRQ $3, R9 // iterations per row
	JEQ  done512
	MOVQ rows+32(FP), R8
	TESTQ R8, R8
	JEQ  done512
	MOVQ mode+40(FP), DX
	MOVQ row+0(FP), SI
	MOVQ drow+8(FP), DI
	MOVQ bias+16(FP), R10
rows512:
	MOVQ R9, CX
	MOVQ R10, BX // the bias restarts with every row
loop512:
	VMOVUPD (SI), Z0
	VADDPD  (BX), Z0, Z0 // u
	VANDPD.BCST  C_ABSMASK, Z0, Z1   // |u|
	TESTQ   DX, DX
	JNE     expneg512
	VBROADCASTSD C_TANHSAT, Z2
	VMINPD  Z1, Z2, Z1   // min(|u|, 22), NaN kept
	VMULPD.BCST  C_MTWO, Z1, Z1   // y = −2·min(|u|, 22)
	EXPM1_REDUCE512
	VPADDQ.BCST C_BIAS1023, Z3, Z5 // 2ᵏ: (bits(t) + 1023) << 52, the exponent field
	VPSLLQ $52, Z5, Z5
	VSUBPD.BCST C_ONE, Z5, Z6 // 2ᵏ − 1 (exact)
	VFMADD231PD Z2, Z5, Z6 // m = 2ᵏ·expm1(r) + (2ᵏ − 1) = expm1(y)
	VADDPD.BCST C_TWO, Z6, Z7 // 2 + m
	VXORPD Z8, Z8, Z8
	VSUBPD Z6, Z8, Z6
	VDIVPD Z7, Z6, Z6 // |tanh u| = −m/(2 + m)
	VANDPD.BCST C_SIGNMASK, Z0, Z0
	VORPD Z0, Z6, Z6 // h = copysign(|tanh u|, u)
	VBROADCASTSD C_ONE, Z7
	VFNMADD231PD Z6, Z6, Z7 // 1 − h²
	JMP store512
expneg512:
	VBROADCASTSD C_SPMAX, Z2
	VMINPD Z1, Z2, Z1 // min(|u|, 750), NaN kept
	VXORPD Z2, Z2, Z2
	VSUBPD Z1, Z2, Z1 // y = −min(|u|, 750)
	EXPM1_REDUCE512
	VADDPD.BCST C_ONE, Z2, Z2 // exp(r)
	VSUBPD.BCST C_MAGIC, Z3, Z5 // k
	VMULPD.BCST C_HALF, Z5, Z6
	VRNDSCALEPD $1, Z6, Z6 // k₁ = ⌊k/2⌋: 2ᵏ as two normal factors 2^k₁·2^(k−k₁)
	VSUBPD Z6, Z5, Z5
	VADDPD.BCST C_MAGIC, Z6, Z6
	VADDPD.BCST C_MAGIC, Z5, Z5
	VPADDQ.BCST C_BIAS1023, Z6, Z6 // 2ᵏ: (bits(t) + 1023) << 52, the exponent field
	VPSLLQ $52, Z6, Z6
	VPADDQ.BCST C_BIAS1023, Z5, Z5 // 2ᵏ: (bits(t) + 1023) << 52, the exponent field
	VPSLLQ $52, Z5, Z5
	VMULPD Z6, Z2, Z2
	VMULPD Z5, Z2, Z2 // e = e^−|u|, rounded once even when subnormal
	VADDPD.BCST C_ONE, Z2, Z13 // 1 + e
	VBROADCASTSD C_ONE, Z12
	VPMOVQ2M Z0, K1
	VBLENDMPD Z2, Z12, K1, Z12 // u < 0 ? e : 1 (by the sign bit)
	VDIVPD Z13, Z12, Z12 // σ(u)
	CMPQ DX, $1
	JNE sigmoid512
	VADDPD Z2, Z2, Z3
	VADDPD.BCST C_TWO, Z2, Z4
	VDIVPD Z4, Z3, Z3 // t = 2e/(2 + e); log1p(e) = 2·atanh(t/2)
	VMULPD Z3, Z3, Z4
	VMULPD.BCST C_QUARTER, Z4, Z4 // x = (t/2)²
	VMULPD Z4, Z4, Z5 // x²
	VMULPD Z5, Z5, Z6 // x⁴
	LINEAR512(C_Q8, C_Q9, Z4, Z7)
	LINEAR512(C_Q6, C_Q7, Z4, Z8)
	LINEAR512(C_Q4, C_Q5, Z4, Z9)
	VFMADD231PD Z8, Z5, Z9
	LINEAR512(C_Q2, C_Q3, Z4, Z8)
	LINEAR512(C_Q0, C_Q1, Z4, Z10)
	VFMADD231PD Z8, Z5, Z10
	VFMADD231PD Z9, Z6, Z10
	VMULPD Z6, Z6, Z6 // x⁸
	VFMADD231PD Z7, Z6, Z10 // Q(x), Estrin's scheme
	VMULPD Z4, Z10, Z10
	VFMADD213PD Z3, Z3, Z10 // log1p(e) = t + t·x·Q(x)
	VXORPD Z6, Z6, Z6
	VBLENDMPD Z6, Z0, K1, Z6 // max(u, 0) by the sign bit
	VADDPD Z10, Z6, Z6 // softplus(u)
	VMOVAPD Z12, Z7
	JMP store512
sigmoid512:
	VMOVAPD Z12, Z6
	VBROADCASTSD C_ONE, Z7
	VSUBPD Z12, Z7, Z7 // 1 − σ
	VMULPD Z12, Z7, Z7 // σ(1 − σ)
store512:
	VMOVUPD Z6, (SI)
	TESTQ   DI, DI
	JEQ     next512
	VMOVUPD Z7, (DI)
	ADDQ    $64, DI
next512:
	ADDQ $64, SI
	ADDQ $64, BX
	DECQ CX
	JNZ  loop512
	DECQ R8
	JNZ  rows512
done512:
	VZEROUPPER
	RET

// func adamRowAVX(theta, grad, m, v *float64, n int, c *[8]float64)
//
// adamUpdate on four lanes, for n a multiple of 4: with c = {b1, 1 − b1,
// b2, 1 − b2, wd, step, bc2, eps},
//   g′ = g + wd·θ (only when wd ≠ 0), m′ = b1·m + (1 − b1)·g′,
//   v′ = b2·v + ((1 − b2)·g′)·g′, θ′ = θ − (step·m′)/(√v′/bc2 + eps),
// each operation rounded separately, in the order of the Go expression (no
// fused multiply–add), so the lanes match adamUpdate compiled for plain
// x86-64.
TEXT ·adamRowAVX(SB), NOSPLIT, $0-48
	MOVQ n+32(FP), CX
	SHRQ $2, CX
	JEQ  adamdone
	MOVQ theta+0(FP), SI
	MOVQ grad+8(FP), DI
	MOVQ m+16(FP), R8
	MOVQ v+24(FP), R9
	MOVQ c+40(FP), AX
	VBROADCASTSD 0(AX), Y8  // b1
	VBROADCASTSD 8(AX), Y9  // 1 − b1
	VBROADCASTSD 16(AX), Y10 // b2
	VBROADCASTSD 24(AX), Y11 // 1 − b2
	VBROADCASTSD 32(AX), Y12 // wd
	VBROADCASTSD 40(AX), Y13 // step
	VBROADCASTSD 48(AX), Y14 // bc2
	VBROADCASTSD 56(AX), Y15 // eps
	VXORPD Y7, Y7, Y7
	VUCOMISD X7, X12
	SETNE DL // wd ≠ 0
adamloop:
	VMOVUPD (SI), Y0 // θ
	VMOVUPD (DI), Y1 // g
	TESTB DL, DL
	JEQ adamnowd
	VMULPD Y0, Y12, Y2
	VADDPD Y2, Y1, Y1 // g + wd·θ
adamnowd:
	VMULPD (R8), Y8, Y2
	VMULPD Y1, Y9, Y3
	VADDPD Y3, Y2, Y2 // m′
	VMULPD (R9), Y10, Y3
	VMULPD Y1, Y11, Y4
	VMULPD Y1, Y4, Y4
	VADDPD Y4, Y3, Y3 // v′
	VMOVUPD Y2, (R8)
	VMOVUPD Y3, (R9)
	VSQRTPD Y3, Y3
	VDIVPD Y14, Y3, Y3
	VADDPD Y15, Y3, Y3 // √v′/bc2 + eps
	VMULPD Y2, Y13, Y2 // step·m′
	VDIVPD Y3, Y2, Y2
	VSUBPD Y2, Y0, Y0 // θ′
	VMOVUPD Y0, (SI)
	ADDQ $32, SI
	ADDQ $32, DI
	ADDQ $32, R8
	ADDQ $32, R9
	DECQ CX
	JNZ adamloop
adamdone:
	VZEROUPPER
	RET

// func adamBoundsAVX(theta, grad, m, v *float64, n int, out *[24]float64)
//
// adamCannotOverflow's scan on four lanes, n a multiple of 4: out gets, lane
// by lane, max|g|, max|θ|, max|m|, max v, min v (from 0) and Σ 0·(|g| +
// |θ| + |m| + v), which is NaN if any input is not finite.
TEXT ·adamBoundsAVX(SB), NOSPLIT, $0-48
	MOVQ theta+0(FP), SI
	MOVQ grad+8(FP), DI
	MOVQ m+16(FP), R8
	MOVQ v+24(FP), R9
	MOVQ n+32(FP), CX
	MOVQ out+40(FP), AX
	VXORPD Y0, Y0, Y0 // max|g|
	VXORPD Y1, Y1, Y1 // max|θ|
	VXORPD Y2, Y2, Y2 // max|m|
	VXORPD Y3, Y3, Y3 // max v
	VXORPD Y4, Y4, Y4 // min v
	VXORPD Y5, Y5, Y5 // NaN detector
	VXORPD Y15, Y15, Y15 // zero
	VBROADCASTSD C_ABSMASK, Y14
	SHRQ $2, CX
	JEQ boundsdone
boundsloop:
	VANDPD (DI), Y14, Y6
	VANDPD (SI), Y14, Y7
	VANDPD (R8), Y14, Y8
	VMOVUPD (R9), Y9
	VMAXPD Y6, Y0, Y0
	VMAXPD Y7, Y1, Y1
	VMAXPD Y8, Y2, Y2
	VMAXPD Y9, Y3, Y3
	VMINPD Y9, Y4, Y4
	VADDPD Y7, Y6, Y10
	VADDPD Y9, Y8, Y11
	VADDPD Y11, Y10, Y10
	VMULPD Y15, Y10, Y10
	VADDPD Y10, Y5, Y5
	ADDQ $32, SI
	ADDQ $32, DI
	ADDQ $32, R8
	ADDQ $32, R9
	DECQ CX
	JNZ boundsloop
boundsdone:
	VMOVUPD Y0, 0(AX)
	VMOVUPD Y1, 32(AX)
	VMOVUPD Y2, 64(AX)
	VMOVUPD Y3, 96(AX)
	VMOVUPD Y4, 128(AX)
	VMOVUPD Y5, 160(AX)
	VZEROUPPER
	RET

// func mulRowAVX(x, y *float64, n int)
//
// x[i] *= y[i] for i < n, n a multiple of 4: the δ sweep's product with the
// activation's derivative, four lanes at a time (the same single rounding
// as the Go loop).
TEXT ·mulRowAVX(SB), NOSPLIT, $0-24
	MOVQ x+0(FP), DI
	MOVQ y+8(FP), SI
	MOVQ n+16(FP), CX
	SHLQ $3, CX
	XORQ AX, AX
	CMPQ CX, $128
	JLT  mulrow4

mulrow16:
	VMOVUPD (DI)(AX*1), Y0
	VMOVUPD 32(DI)(AX*1), Y1
	VMOVUPD 64(DI)(AX*1), Y2
	VMOVUPD 96(DI)(AX*1), Y3
	VMULPD  (SI)(AX*1), Y0, Y0
	VMULPD  32(SI)(AX*1), Y1, Y1
	VMULPD  64(SI)(AX*1), Y2, Y2
	VMULPD  96(SI)(AX*1), Y3, Y3
	VMOVUPD Y0, (DI)(AX*1)
	VMOVUPD Y1, 32(DI)(AX*1)
	VMOVUPD Y2, 64(DI)(AX*1)
	VMOVUPD Y3, 96(DI)(AX*1)
	ADDQ    $128, AX
	LEAQ    128(AX), DX
	CMPQ    DX, CX
	JLE     mulrow16

mulrow4:
	CMPQ    AX, CX
	JGE     mulrowdone
	VMOVUPD (DI)(AX*1), Y0
	VMULPD  (SI)(AX*1), Y0, Y0
	VMOVUPD Y0, (DI)(AX*1)
	ADDQ    $32, AX
	JMP     mulrow4

mulrowdone:
	VZEROUPPER
	RET
