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

// func tanhRowAVX(row, drow, bias *float64, n int)
//
// For j < n (a multiple of 4): u = row[j] + bias[j], row[j] = tanh(u) and,
// if drow is not nil, drow[j] = 1 − tanh²(u): tanhFast's formulas four
// lanes at a time, with fused multiply–adds.
TEXT ·tanhRowAVX(SB), NOSPLIT, $0-32
	MOVQ row+0(FP), SI
	MOVQ drow+8(FP), DI
	MOVQ bias+16(FP), BX
	MOVQ n+24(FP), CX
	SHRQ $2, CX
	JEQ  tanhdone
tanhloop:
	VMOVUPD (SI), Y0
	VADDPD  (BX), Y0, Y0            // u
	VANDPD  actc<>+0(SB), Y0, Y1              // |u|
	VMOVUPD actc<>+160(SB), Y2
	VMINPD  Y1, Y2, Y1              // min(|u|, 22), NaN kept
	VMULPD  actc<>+224(SB), Y1, Y1              // y = −2·min(|u|, 22)
	VMOVUPD actc<>+320(SB), Y3
	VFMADD231PD actc<>+288(SB), Y1, Y3
	VSUBPD actc<>+320(SB), Y3, Y5
	VMOVAPD Y1, Y4
	VFMADD231PD actc<>+352(SB), Y5, Y4
	VFMADD231PD actc<>+384(SB), Y5, Y4
	VMULPD Y4, Y4, Y6
	VMULPD Y6, Y6, Y7
	VMOVUPD actc<>+704(SB), Y5
	VFMADD231PD actc<>+736(SB), Y4, Y5
	VMOVUPD actc<>+640(SB), Y8
	VFMADD231PD actc<>+672(SB), Y4, Y8
	VMOVUPD actc<>+576(SB), Y9
	VFMADD231PD actc<>+608(SB), Y4, Y9
	VFMADD231PD Y8, Y6, Y9
	VMOVUPD actc<>+512(SB), Y8
	VFMADD231PD actc<>+544(SB), Y4, Y8
	VMOVUPD actc<>+448(SB), Y2
	VFMADD231PD actc<>+480(SB), Y4, Y2
	VFMADD231PD Y8, Y6, Y2
	VFMADD231PD Y9, Y7, Y2
	VMULPD Y7, Y7, Y7
	VFMADD231PD Y5, Y7, Y2
	VMULPD Y6, Y2, Y2
	VADDPD Y4, Y2, Y2
	VPADDQ actc<>+416(SB), Y3, Y5
	VPSLLQ $52, Y5, Y5
	VSUBPD actc<>+64(SB), Y5, Y6
	VFMADD231PD Y2, Y5, Y6
	VADDPD actc<>+96(SB), Y6, Y7
	VXORPD Y8, Y8, Y8
	VSUBPD Y6, Y8, Y6
	VDIVPD Y7, Y6, Y6
	VANDPD actc<>+32(SB), Y0, Y0
	VORPD Y0, Y6, Y6
	VMOVUPD Y6, (SI)
	TESTQ DI, DI
	JEQ   tanhnext
	VMOVUPD actc<>+64(SB), Y7
	VFNMADD231PD Y6, Y6, Y7         // 1 − h²
	VMOVUPD Y7, (DI)
	ADDQ $32, DI
tanhnext:
	ADDQ $32, SI
	ADDQ $32, BX
	DECQ CX
	JNZ  tanhloop
tanhdone:
	VZEROUPPER
	RET

// func softplusRowAVX(row, drow, bias *float64, n int, sigmoid bool)
//
// For j < n (a multiple of 4), u = row[j] + bias[j]: softplus(u) to row[j]
// and σ(u) to drow[j] (if not nil), or with sigmoid σ(u) to row[j] and
// σ(u)(1 − σ(u)) to drow[j]: expNegAbs and softplusFromE four lanes at a
// time, with fused multiply–adds.
TEXT ·softplusRowAVX(SB), NOSPLIT, $0-33
	MOVQ    row+0(FP), SI
	MOVQ    drow+8(FP), DI
	MOVQ    bias+16(FP), BX
	MOVQ    n+24(FP), CX
	MOVBLZX sigmoid+32(FP), DX
	SHRQ    $2, CX
	JEQ     spdone
sploop:
	VMOVUPD (SI), Y0
	VADDPD  (BX), Y0, Y0            // u
	VANDPD  actc<>+0(SB), Y0, Y1              // |u|
	VMOVUPD actc<>+192(SB), Y2
	VMINPD  Y1, Y2, Y1              // min(|u|, 750), NaN kept
	VXORPD  Y2, Y2, Y2
	VSUBPD  Y1, Y2, Y1              // y = −min(|u|, 750)
	VMOVUPD actc<>+320(SB), Y3
	VFMADD231PD actc<>+288(SB), Y1, Y3
	VSUBPD actc<>+320(SB), Y3, Y5
	VMOVAPD Y1, Y4
	VFMADD231PD actc<>+352(SB), Y5, Y4
	VFMADD231PD actc<>+384(SB), Y5, Y4
	VMULPD Y4, Y4, Y6
	VMULPD Y6, Y6, Y7
	VMOVUPD actc<>+704(SB), Y5
	VFMADD231PD actc<>+736(SB), Y4, Y5
	VMOVUPD actc<>+640(SB), Y8
	VFMADD231PD actc<>+672(SB), Y4, Y8
	VMOVUPD actc<>+576(SB), Y9
	VFMADD231PD actc<>+608(SB), Y4, Y9
	VFMADD231PD Y8, Y6, Y9
	VMOVUPD actc<>+512(SB), Y8
	VFMADD231PD actc<>+544(SB), Y4, Y8
	VMOVUPD actc<>+448(SB), Y2
	VFMADD231PD actc<>+480(SB), Y4, Y2
	VFMADD231PD Y8, Y6, Y2
	VFMADD231PD Y9, Y7, Y2
	VMULPD Y7, Y7, Y7
	VFMADD231PD Y5, Y7, Y2
	VMULPD Y6, Y2, Y2
	VADDPD Y4, Y2, Y2
	VADDPD actc<>+64(SB), Y2, Y2
	VSUBPD actc<>+320(SB), Y3, Y5
	VMULPD actc<>+256(SB), Y5, Y6
	VROUNDPD $1, Y6, Y6
	VSUBPD Y6, Y5, Y5
	VADDPD actc<>+320(SB), Y6, Y6
	VADDPD actc<>+320(SB), Y5, Y5
	VPADDQ actc<>+416(SB), Y6, Y6
	VPSLLQ $52, Y6, Y6
	VPADDQ actc<>+416(SB), Y5, Y5
	VPSLLQ $52, Y5, Y5
	VMULPD Y6, Y2, Y2
	VMULPD Y5, Y2, Y2
	VADDPD Y2, Y2, Y3
	VADDPD actc<>+96(SB), Y2, Y4
	VDIVPD Y4, Y3, Y3
	VMULPD Y3, Y3, Y4
	VMULPD actc<>+128(SB), Y4, Y4
	VMULPD Y4, Y4, Y5
	VMULPD Y5, Y5, Y6
	VMOVUPD actc<>+1024(SB), Y7
	VFMADD231PD actc<>+1056(SB), Y4, Y7
	VMOVUPD actc<>+960(SB), Y8
	VFMADD231PD actc<>+992(SB), Y4, Y8
	VMOVUPD actc<>+896(SB), Y9
	VFMADD231PD actc<>+928(SB), Y4, Y9
	VFMADD231PD Y8, Y5, Y9
	VMOVUPD actc<>+832(SB), Y8
	VFMADD231PD actc<>+864(SB), Y4, Y8
	VMOVUPD actc<>+768(SB), Y10
	VFMADD231PD actc<>+800(SB), Y4, Y10
	VFMADD231PD Y8, Y5, Y10
	VFMADD231PD Y9, Y6, Y10
	VMULPD Y6, Y6, Y6
	VFMADD231PD Y7, Y6, Y10
	VMULPD Y4, Y10, Y10
	VFMADD213PD Y3, Y3, Y10
	VMOVUPD actc<>+64(SB), Y11
	VBLENDVPD Y0, Y2, Y11, Y12
	VADDPD Y11, Y2, Y13
	VDIVPD Y13, Y12, Y12
	TESTL DX, DX
	JNE   spsigmoid
	VXORPD    Y14, Y14, Y14
	VBLENDVPD Y0, Y14, Y0, Y14      // max(u, 0) by the sign bit
	VADDPD    Y10, Y14, Y14         // softplus
	VMOVUPD   Y14, (SI)
	TESTQ     DI, DI
	JEQ       spnext
	VMOVUPD   Y12, (DI)
	ADDQ      $32, DI
	JMP       spnext
spsigmoid:
	VMOVUPD Y12, (SI)
	TESTQ   DI, DI
	JEQ     spnext
	VSUBPD  Y12, Y11, Y13           // 1 − σ
	VMULPD  Y13, Y12, Y13
	VMOVUPD Y13, (DI)
	ADDQ    $32, DI
spnext:
	ADDQ $32, SI
	ADDQ $32, BX
	DECQ CX
	JNZ  sploop
spdone:
	VZEROUPPER
	RET
