//go:build amd64 && !purego

package neuralode

// activationRowAVX is the AVX2 kernel of tanhRow (mode 0), softplusRow
// (mode 1) and sigmoidRow (mode 2) on rows consecutive rows of n elements,
// n a multiple of 4, each row with the same bias (mlp_amd64.s); drow may
// be nil.
//
//go:noescape
func activationRowAVX(row, drow, bias *float64, n, rows, mode int)

// activationRowAVX512 is activationRowAVX on eight lanes (AVX-512 F and
// DQ), for n a multiple of 8, bit-identical to it.
//
//go:noescape
func activationRowAVX512(row, drow, bias *float64, n, rows, mode int)

// adamRowAVX is the AVX kernel of Adam.Step's update pass for n a multiple
// of 4 (mlp_amd64.s); c = {b1, 1 − b1, b2, 1 − b2, wd, step, bc2, eps}.
//
//go:noescape
func adamRowAVX(theta, grad, m, v *float64, n int, c *[8]float64)

// adamBoundsAVX is the AVX kernel of adamCannotOverflow's scan for n a
// multiple of 4 (mlp_amd64.s): per lane, max|g|, max|θ|, max|m|, max v,
// min v and a sum that is NaN if any input is not finite.
//
//go:noescape
func adamBoundsAVX(theta, grad, m, v *float64, n int, out *[24]float64)

// mulRowAVX is x[i] *= y[i] for i < n, n a multiple of 4 (mlp_amd64.s).
//
//go:noescape
func mulRowAVX(x, y *float64, n int)
