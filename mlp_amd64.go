//go:build amd64 && !purego

package neuralode

// tanhRowAVX is tanhRow's kernel for n a multiple of 4 (mlp_amd64.s); drow
// may be nil.
//
//go:noescape
func tanhRowAVX(row, drow, bias *float64, n int)

// softplusRowAVX is softplusRow's kernel (sigmoid false) and sigmoidRow's
// (sigmoid true) for n a multiple of 4 (mlp_amd64.s); drow may be nil.
//
//go:noescape
func softplusRowAVX(row, drow, bias *float64, n int, sigmoid bool)
