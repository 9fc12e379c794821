package neuralode

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
)

// Case is one neural-ODE gradient problem in the package's JSON interchange
// format (version 1): an MLP's weights, a batch of initial states,
// observation times, targets, tolerances and optional reference results,
// written so that a model built in PyTorch loads in Go (and back) without
// reshuffling, and two implementations can be compared number for number.
// Nested slices mirror the JSON arrays; Z0Flat, TargetsFlat and MLP convert
// to the library's flat layouts. The files in testdata/cases follow it.
//
// The model is f(t, z) = MLP(z), or MLP([z, t]) when "time_input" is
// "concat":
//
//	h_0 = z                       one row of the batch (length D, or D+1 with t)
//	h_{l+1} = act(W_l h_l + b_l)  l = 0 … L−1, L = hidden_layers
//	f = W_L h_L + b_L             the last layer is linear
//
// W_l has shape (out, in) and b_l shape (out), as PyTorch's nn.Linear stores
// them; the flat parameter vector is W_0 (row-major), b_0, W_1, b_1, …, the
// order of PyTorch's parameters(). "activation" is "tanh" (default),
// "softplus" (log(1+eˣ)), "relu" or "sigmoid"; "time_input" is "none"
// (default, autonomous) or "concat" (t appended as the last input).
//
// The problem's fields:
//
//	layers        [{"W": [[…]], "b": […]}, …], first layer first
//	z0            B × D initial states, one row per sample
//	t             increasing times t_0 < t_1 < … < t_M; the solve starts at t_0
//	target        M × B × D; target[i−1] is compared with z(t_i)
//	rtol, atol    tolerances of the solves being compared
//
// The whole batch is integrated as one ODE system of size B·D, with one
// shared adaptive step sequence and the RMS error norm over all B·D
// entries. The loss is L = Σ_{i=1..M} mean_{b,d} (z_b(t_i)_d − target[i−1]_{b,d})²
// (MSELoss).
//
// The optional "reference" holds the loss, z_T (B × D at t_M) and grad
// (shaped like layers: dL/dW_l and dL/db_l per layer), computed by direct
// backpropagation through a Dormand–Prince 5(4) solve at rtol = atol =
// 1e−12 (CaseReference). "cross_check" records an independent check of it
// and "peers_at_case_tol" what PyTorch libraries produced at the case's own
// tolerance (Peers): figures to compare with, not targets to copy. Readers
// ignore fields they do not know, so cases can carry more; this one keeps
// them in Extra and writes them back.
type Case struct {
	Name       string
	Activation string // "tanh" (default), "softplus", "relu", "sigmoid", "identity"
	TimeInput  string // "none" (default) or "concat"
	// HiddenLayers, D, H and B describe the shapes: number of hidden layers
	// (len(Layers) − 1), state dimension, hidden width (0 if the widths
	// differ) and batch size. ReadCase sets them from the data (after
	// checking them against the file's own fields); Write recomputes them.
	HiddenLayers int
	D, H, B      int

	Layers []CaseLayer    // first layer first
	Z0     [][]float64    // B × D
	T      []float64      // t_0 < t_1 < … < t_M
	Target [][][]float64  // M × B × D; Target[i−1] is compared with z(t_i)
	RTol   float64        // relative tolerance of the solves being compared
	ATol   float64        // absolute tolerance
	Ref    *CaseReference // optional reference results ("reference")

	// PeersAtCaseTol is the raw "peers_at_case_tol" object, written back
	// verbatim.
	PeersAtCaseTol json.RawMessage
	// Extra holds the top-level fields this reader does not interpret
	// (mlp_convention, generation, cross_check, …), written back verbatim so
	// a read–write round trip loses nothing.
	Extra map[string]json.RawMessage
}

// CaseLayer is one nn.Linear layer: W is out × in, b has length out.
type CaseLayer struct {
	W [][]float64 `json:"W"`
	B []float64   `json:"b"`
}

// CaseReference holds reference results: by the format's convention, direct
// backpropagation through a Dormand–Prince 5(4) solve at rtol = atol = 1e−12.
type CaseReference struct {
	Method      string      `json:"method,omitempty"`
	RTol        float64     `json:"rtol,omitempty"`
	ATol        float64     `json:"atol,omitempty"`
	Loss        float64     `json:"loss"`
	ZT          [][]float64 `json:"z_T,omitempty"` // B × D at t_M
	Grad        []CaseLayer `json:"grad,omitempty"`
	FwdNFE      int         `json:"fwd_nfe,omitempty"`
	FwdStepsAcc int         `json:"fwd_steps_acc,omitempty"`
	FwdStepsRej int         `json:"fwd_steps_rej,omitempty"`
	TimeS       float64     `json:"time_s,omitempty"`

	// raw holds what ReadCase read but the fields above cannot show: the
	// fields this type does not interpret and the zeros the file spelled
	// out, so that MarshalJSON writes them back. Nil when there are none.
	raw map[string]json.RawMessage
}

// peerResult is what a peer library produced at the case's tolerance
// (an entry of "peers_at_case_tol"): figures the tests compare with.
type peerResult struct {
	Loss        float64     `json:"loss"`
	FwdNFE      int         `json:"fwd_nfe"`
	BwdNFE      int         `json:"bwd_nfe"`
	FwdStepsAcc int         `json:"fwd_steps_acc"`
	FwdStepsRej int         `json:"fwd_steps_rej"`
	BwdStepsAcc int         `json:"bwd_steps_acc"`
	BwdStepsRej int         `json:"bwd_steps_rej"`
	GradRelErr  float64     `json:"grad_rel_err_vs_reference"`
	LossRelErr  float64     `json:"loss_rel_err_vs_reference"`
	GTol        float64     `json:"gtol,omitempty"`
	Grad        []CaseLayer `json:"grad,omitempty"` // peer's gradient, when recorded
}

// caseKnown lists the top-level keys the reader interprets, in the order
// Write emits them.
var caseKnown = []string{"name", "format_version", "activation", "time_input", "hidden_layers",
	"D", "H", "B", "nobs", "layers", "z0", "t", "target", "rtol", "atol", "reference", "peers_at_case_tol"}

// LoadCase reads a case file; see ReadCase.
func LoadCase(path string) (*Case, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	c, err := ReadCase(f)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return c, nil
}

// caseErr reports a malformed field of a case.
func caseErr(field, format string, args ...any) error {
	return invalidf(field, format, args...)
}

// ReadCase decodes and validates a case. Unknown fields are kept in Extra.
// A malformed document, a missing required field (layers, z0, t, target,
// rtol, atol) or a mis-shaped one gives an *InputError naming the field
// (e.g. "layers[1].W: row 3 has 31 columns, want 32") that wraps
// ErrInvalidInput. The layer shapes define the architecture; D, H, B,
// hidden_layers and nobs, when present, must agree with them.
func ReadCase(r io.Reader) (*Case, error) {
	var raw map[string]json.RawMessage
	dec := json.NewDecoder(r)
	if err := dec.Decode(&raw); err != nil {
		return nil, &InputError{Field: "case", Reason: "malformed JSON: " + err.Error(), Err: ErrInvalidInput}
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, caseErr("case", "unexpected data after the case's JSON object")
	}
	if raw == nil {
		return nil, caseErr("case", "not a JSON object")
	}
	cr := caseFields(raw)
	c := &Case{Activation: "tanh", TimeInput: "none"}
	if err := cr.readModel(c); err != nil {
		return nil, err
	}
	decl, err := cr.readDeclaredShape()
	if err != nil {
		return nil, err
	}
	if err := cr.readProblem(c); err != nil {
		return nil, err
	}
	// The architecture comes from the layer shapes.
	if err := c.inferShape(); err != nil {
		return nil, err
	}
	if err := decl.check(c); err != nil {
		return nil, err
	}
	if err := c.Validate(); err != nil {
		return nil, err
	}
	return c, nil
}

// caseFields is a decoded case object, read field by field.
type caseFields map[string]json.RawMessage

// get decodes the field key into dst and reports whether it was present
// (null counts as absent); a missing required field is an error.
func (cr caseFields) get(key string, dst any, required bool) (bool, error) {
	v, ok := cr[key]
	if !ok || string(bytes.TrimSpace(v)) == "null" {
		if required {
			return false, caseErr(key, "missing")
		}
		return false, nil
	}
	if err := json.Unmarshal(v, dst); err != nil {
		return false, caseErr(key, "%s", jsonReason(err))
	}
	return true, nil
}

// readModel reads the format version, the name and the network's
// activation and time input.
func (cr caseFields) readModel(c *Case) error {
	var version int
	if ok, err := cr.get("format_version", &version, false); err != nil {
		return err
	} else if ok && version != 1 {
		return caseErr("format_version", "%d, want 1", version)
	}
	if _, err := cr.get("name", &c.Name, false); err != nil {
		return err
	}
	if _, err := cr.get("activation", &c.Activation, false); err != nil {
		return err
	}
	if _, err := ParseActivation(c.Activation); err != nil {
		return caseErr("activation", "unknown activation %q", c.Activation)
	}
	if _, err := cr.get("time_input", &c.TimeInput, false); err != nil {
		return err
	}
	if c.TimeInput != "none" && c.TimeInput != "concat" {
		return caseErr("time_input", "%q, want \"none\" or \"concat\"", c.TimeInput)
	}
	return nil
}

// declaredShape holds the optional shape fields of a case file, which must
// agree with the shapes of the data.
type declaredShape struct {
	hl, d, h, b, nobs                int
	hasHL, hasD, hasH, hasB, hasNobs bool
}

func (cr caseFields) readDeclaredShape() (declaredShape, error) {
	var ds declaredShape
	var err error
	for _, x := range []struct {
		key string
		dst *int
		has *bool
	}{{"hidden_layers", &ds.hl, &ds.hasHL}, {"D", &ds.d, &ds.hasD}, {"H", &ds.h, &ds.hasH}, {"B", &ds.b, &ds.hasB}, {"nobs", &ds.nobs, &ds.hasNobs}} {
		if *x.has, err = cr.get(x.key, x.dst, false); err != nil {
			return ds, err
		}
	}
	return ds, nil
}

// check compares the declared shape with the one inferred from the data.
func (ds declaredShape) check(c *Case) error {
	for _, x := range []struct {
		key      string
		has      bool
		got, inf int
	}{{"hidden_layers", ds.hasHL, ds.hl, c.HiddenLayers}, {"D", ds.hasD, ds.d, c.D}, {"B", ds.hasB, ds.b, c.B}, {"nobs", ds.hasNobs, ds.nobs, len(c.Target)}} {
		if x.has && x.got != x.inf {
			return caseErr(x.key, "%d, but the data give %d", x.got, x.inf)
		}
	}
	if ds.hasH && ds.h != c.H {
		if c.H == 0 {
			return caseErr("H", "%d, but the hidden layers have different widths", ds.h)
		}
		return caseErr("H", "%d, but the layers give %d", ds.h, c.H)
	}
	return nil
}

// readProblem reads the weights, the data, the tolerances and the optional
// reference, and keeps the peers' record and unknown fields verbatim.
func (cr caseFields) readProblem(c *Case) error {
	for _, x := range []struct {
		key string
		dst any
	}{{"layers", &c.Layers}, {"z0", &c.Z0}, {"t", &c.T}, {"target", &c.Target}, {"rtol", &c.RTol}, {"atol", &c.ATol}} {
		if _, err := cr.get(x.key, x.dst, true); err != nil {
			return err
		}
	}
	var ref CaseReference
	if ok, err := cr.get("reference", &ref, false); err != nil {
		return err
	} else if ok {
		ref.keepFields(cr["reference"])
		c.Ref = &ref
	}
	if v, ok := cr["peers_at_case_tol"]; ok {
		c.PeersAtCaseTol = compactJSON(v)
	}
	for k, v := range cr {
		if !isKnownCaseKey(k) {
			if c.Extra == nil {
				c.Extra = make(map[string]json.RawMessage)
			}
			c.Extra[k] = compactJSON(v)
		}
	}
	return nil
}

// compactJSON returns v without insignificant white space (v is valid JSON,
// having been decoded already), so kept raw fields read the same however
// the file was indented.
func compactJSON(v json.RawMessage) json.RawMessage {
	var b bytes.Buffer
	if err := json.Compact(&b, v); err != nil {
		return append(json.RawMessage(nil), v...)
	}
	return b.Bytes()
}

func isKnownCaseKey(k string) bool {
	for _, kk := range caseKnown {
		if k == kk {
			return true
		}
	}
	return false
}

// jsonReason turns a decoding error into a short reason without the Go type
// names json uses.
func jsonReason(err error) string {
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) {
		if te.Field != "" {
			return fmt.Sprintf("%s: got JSON %s, want %s", te.Field, te.Value, te.Type)
		}
		return fmt.Sprintf("got JSON %s, want %s", te.Value, te.Type)
	}
	return err.Error()
}

// inferShape sets D, H, B and HiddenLayers from Layers and Z0.
func (c *Case) inferShape() error {
	if len(c.Layers) == 0 {
		return caseErr("layers", "empty")
	}
	nl := len(c.Layers)
	out := len(c.Layers[nl-1].W)
	if out == 0 {
		return caseErr(fmt.Sprintf("layers[%d].W", nl-1), "no rows")
	}
	c.D = out
	c.HiddenLayers = nl - 1
	c.H = 0
	for l := 0; l < nl-1; l++ {
		w := len(c.Layers[l].W)
		if l == 0 {
			c.H = w
		} else if w != c.H {
			c.H = 0
			break
		}
	}
	c.B = len(c.Z0)
	return nil
}

// Validate checks the shapes and values of a case: layer shapes chain from
// D (or D+1 with time input) to D, z0 is B × D, t is strictly increasing
// with at least two entries, target is M × B × D with M = len(t) − 1,
// tolerances are positive, all numbers finite, and a reference (if any) has
// z_T of shape B × D and grad shaped like layers. Errors name the field.
func (c *Case) Validate() error {
	if len(c.Layers) == 0 {
		return caseErr("layers", "empty")
	}
	if _, err := ParseActivation(c.Activation); err != nil {
		return caseErr("activation", "unknown activation %q", c.Activation)
	}
	if c.TimeInput != "none" && c.TimeInput != "concat" && c.TimeInput != "" {
		return caseErr("time_input", "%q, want \"none\" or \"concat\"", c.TimeInput)
	}
	nl := len(c.Layers)
	D := len(c.Layers[nl-1].W)
	in := D
	if c.TimeInput == "concat" {
		in = D + 1
	}
	if err := checkLayers("layers", c.Layers, in, D); err != nil {
		return err
	}
	if len(c.Z0) == 0 {
		return caseErr("z0", "empty batch")
	}
	if err := checkMatrix("z0", c.Z0, len(c.Z0), D); err != nil {
		return err
	}
	B := len(c.Z0)
	if len(c.T) < 2 {
		return caseErr("t", "%d times, want at least 2", len(c.T))
	}
	if err := checkFinite("t", c.T); err != nil {
		return err
	}
	for i := 1; i < len(c.T); i++ {
		if !(c.T[i] > c.T[i-1]) {
			return caseErr("t", "not strictly increasing at index %d (%v after %v)", i, c.T[i], c.T[i-1])
		}
	}
	M := len(c.T) - 1
	if len(c.Target) != M {
		return caseErr("target", "%d observations, want len(t)−1 = %d", len(c.Target), M)
	}
	for i, tg := range c.Target {
		if err := checkMatrix(fmt.Sprintf("target[%d]", i), tg, B, D); err != nil {
			return err
		}
	}
	if !(c.RTol > 0) || math.IsInf(c.RTol, 0) {
		return caseErr("rtol", "%v, want finite > 0", c.RTol)
	}
	if !(c.ATol > 0) || math.IsInf(c.ATol, 0) {
		return caseErr("atol", "%v, want finite > 0", c.ATol)
	}
	if r := c.Ref; r != nil {
		if math.IsNaN(r.Loss) || math.IsInf(r.Loss, 0) {
			return &InputError{Field: "reference.loss", Reason: fmt.Sprintf("%v", r.Loss), Err: ErrNonFinite}
		}
		if r.ZT != nil {
			if err := checkMatrix("reference.z_T", r.ZT, B, D); err != nil {
				return err
			}
		}
		if r.Grad != nil {
			if len(r.Grad) != nl {
				return caseErr("reference.grad", "%d layers, want %d", len(r.Grad), nl)
			}
			if err := checkLayers("reference.grad", r.Grad, in, D); err != nil {
				return err
			}
		}
	}
	return nil
}

// checkLayers checks that layers chain from in inputs to out outputs.
func checkLayers(field string, layers []CaseLayer, in, out int) error {
	for l, ly := range layers {
		name := fmt.Sprintf("%s[%d]", field, l)
		rows := len(ly.W)
		if rows == 0 {
			return caseErr(name+".W", "no rows")
		}
		if l == len(layers)-1 && rows != out {
			return caseErr(name+".W", "%d rows, want D = %d", rows, out)
		}
		if err := checkMatrix(name+".W", ly.W, rows, in); err != nil {
			return err
		}
		if len(ly.B) != rows {
			return caseErr(name+".b", "length %d, want %d", len(ly.B), rows)
		}
		if err := checkFinite(name+".b", ly.B); err != nil {
			return err
		}
		in = rows
	}
	return nil
}

// checkMatrix checks that x is rows × cols and finite.
func checkMatrix(field string, x [][]float64, rows, cols int) error {
	if len(x) != rows {
		return caseErr(field, "%d rows, want %d", len(x), rows)
	}
	for i, r := range x {
		if len(r) != cols {
			return caseErr(field, "row %d has %d columns, want %d", i, len(r), cols)
		}
		if ok, j := allFinite(r); !ok {
			return &InputError{Field: field, Reason: fmt.Sprintf("row %d column %d is %v", i, j, r[j]), Err: ErrNonFinite}
		}
	}
	return nil
}

// MLPConfig returns the architecture the case's layers describe.
func (c *Case) MLPConfig() (MLPConfig, error) {
	act, err := ParseActivation(c.Activation)
	if err != nil {
		return MLPConfig{}, caseErr("activation", "unknown activation %q", c.Activation)
	}
	nl := len(c.Layers)
	if nl == 0 {
		return MLPConfig{}, caseErr("layers", "empty")
	}
	cfg := MLPConfig{Dim: len(c.Layers[nl-1].W), Activation: act, TimeInput: c.TimeInput == "concat"}
	for l := 0; l < nl-1; l++ {
		cfg.Hidden = append(cfg.Hidden, len(c.Layers[l].W))
	}
	return cfg, nil
}

// MLP builds the case's network with its weights.
func (c *Case) MLP() (*MLP, error) {
	if err := c.Validate(); err != nil {
		return nil, err
	}
	cfg, err := c.MLPConfig()
	if err != nil {
		return nil, err
	}
	m, err := NewMLP(cfg, nil)
	if err != nil {
		return nil, err
	}
	if err := FlattenLayers(c.Layers, m.Params()); err != nil {
		return nil, err
	}
	return m, nil
}

// FlattenLayers writes layers in parameter order (W_0 row-major, b_0, W_1,
// …) into dst, whose length must equal the total number of entries. It is
// the inverse of UnflattenLayers.
func FlattenLayers(layers []CaseLayer, dst []float64) error {
	n := 0
	for _, ly := range layers {
		for _, row := range ly.W {
			n += len(row)
		}
		n += len(ly.B)
	}
	if len(dst) != n {
		return invalidf("dst", "length %d, want %d", len(dst), n)
	}
	off := 0
	for _, ly := range layers {
		for _, row := range ly.W {
			off += copy(dst[off:], row)
		}
		off += copy(dst[off:], ly.B)
	}
	return nil
}

// UnflattenLayers splits a flat vector in m's parameter layout (the
// parameters themselves, or a gradient with respect to them) into layers
// shaped like the case format's "layers" and "reference.grad".
func UnflattenLayers(m *MLP, flat []float64) ([]CaseLayer, error) {
	if len(flat) != m.NumParams() {
		return nil, invalidf("flat", "length %d, want %d", len(flat), m.NumParams())
	}
	layers := make([]CaseLayer, m.NumLayers())
	for l := range layers {
		out, in := m.sizes[l+1], m.sizes[l]
		w := flat[m.wOff[l]:m.bOff[l]]
		rows := make([][]float64, out)
		for o := range rows {
			rows[o] = append([]float64(nil), w[o*in:o*in+in]...)
		}
		layers[l] = CaseLayer{W: rows, B: append([]float64(nil), flat[m.bOff[l]:m.bOff[l]+out]...)}
	}
	return layers, nil
}

// SetModel stores m's architecture and current parameters in the case
// (layers, activation, time_input, hidden_layers, D, H).
func (c *Case) SetModel(m *MLP) error {
	layers, err := UnflattenLayers(m, m.Params())
	if err != nil {
		return err
	}
	c.Layers = layers
	c.Activation = m.cfg.Activation.String()
	c.TimeInput = "none"
	if m.cfg.TimeInput {
		c.TimeInput = "concat"
	}
	return c.inferShape()
}

// Z0Flat returns z0 as one batch-major vector of length B·D.
func (c *Case) Z0Flat() []float64 { return flattenRows(c.Z0) }

// TargetsFlat returns the targets as M batch-major vectors of length B·D;
// element i−1 is compared with z(t_i).
func (c *Case) TargetsFlat() [][]float64 {
	out := make([][]float64, len(c.Target))
	for i, tg := range c.Target {
		out[i] = flattenRows(tg)
	}
	return out
}

// Loss returns the case's loss Σ_i mean (z(t_i) − target_i)² as an
// MSELoss for its shape (B samples of dimension D at len(T) times, from
// Z0 and the layers).
func (c *Case) Loss() (Loss, error) {
	if err := c.Validate(); err != nil {
		return nil, err
	}
	shape := *c
	if err := shape.inferShape(); err != nil {
		return nil, err
	}
	c = &shape
	var tg []float64
	for _, row := range c.TargetsFlat() {
		tg = append(tg, row...)
	}
	return MSELoss(LossShape{Batch: c.B, Dim: c.D, Times: len(c.T)}, tg)
}

// RefGradFlat returns the reference gradient in parameter order, or nil if
// the case has none.
func (c *Case) RefGradFlat() []float64 {
	if c.Ref == nil || c.Ref.Grad == nil {
		return nil
	}
	n := 0
	for _, ly := range c.Ref.Grad {
		for _, row := range ly.W {
			n += len(row)
		}
		n += len(ly.B)
	}
	g := make([]float64, n)
	_ = FlattenLayers(c.Ref.Grad, g) // sizes match by construction
	return g
}

func flattenRows(x [][]float64) []float64 {
	n := 0
	for _, r := range x {
		n += len(r)
	}
	out := make([]float64, 0, n)
	for _, r := range x {
		out = append(out, r...)
	}
	return out
}

// peers parses PeersAtCaseTol: one peerResult for every entry that is a
// JSON object (e.g. "direct", "adjoint", "seminorm", "gq"); string entries
// such as notes are skipped. A case without peers gives an empty map.
func (c *Case) peers() (map[string]peerResult, error) {
	res := map[string]peerResult{}
	if len(c.PeersAtCaseTol) == 0 {
		return res, nil
	}
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(c.PeersAtCaseTol, &raw); err != nil {
		return nil, caseErr("peers_at_case_tol", "%s", jsonReason(err))
	}
	for k, v := range raw {
		v = bytes.TrimSpace(v)
		if len(v) == 0 || v[0] != '{' {
			continue
		}
		var p peerResult
		if err := json.Unmarshal(v, &p); err != nil {
			return nil, caseErr("peers_at_case_tol."+k, "%s", jsonReason(err))
		}
		res[k] = p
	}
	return res, nil
}

// Write encodes the case as JSON: the known fields in the order of the
// format description, then the Extra fields sorted by key. Numbers are
// written in the shortest form that reads back to the same float64, so a
// Write–ReadCase round trip is exact.
func (c *Case) Write(w io.Writer) error {
	if err := c.Validate(); err != nil {
		return err
	}
	nobs := len(c.Target)
	shape := *c
	if err := shape.inferShape(); err != nil {
		return err
	}
	var buf bytes.Buffer
	buf.WriteString("{")
	first := true
	put := func(key string, v any) error {
		var data []byte
		switch x := v.(type) {
		case json.RawMessage:
			var cb bytes.Buffer
			if err := json.Compact(&cb, x); err != nil {
				return invalidf(key, "raw value is not valid JSON: %v", err)
			}
			data = cb.Bytes()
		default:
			var err error
			data, err = json.Marshal(v)
			if err != nil {
				return fmt.Errorf("neuralode: encoding case field %s: %w", key, err)
			}
		}
		if !first {
			buf.WriteString(",")
		}
		first = false
		buf.WriteString("\n  ")
		k, _ := json.Marshal(key)
		buf.Write(k)
		buf.WriteString(": ")
		buf.Write(data)
		return nil
	}
	ti := c.TimeInput
	if ti == "" {
		ti = "none"
	}
	type kv struct {
		k string
		v any
	}
	fields := []kv{
		{"name", c.Name}, {"format_version", 1}, {"activation", c.Activation}, {"time_input", ti},
		{"hidden_layers", shape.HiddenLayers}, {"D", shape.D},
	}
	if shape.H > 0 {
		fields = append(fields, kv{"H", shape.H})
	}
	fields = append(fields, kv{"B", len(c.Z0)}, kv{"nobs", nobs}, kv{"layers", c.Layers}, kv{"z0", c.Z0},
		kv{"t", c.T}, kv{"target", c.Target}, kv{"rtol", c.RTol}, kv{"atol", c.ATol})
	if c.Ref != nil {
		fields = append(fields, kv{"reference", c.Ref})
	}
	if len(c.PeersAtCaseTol) > 0 {
		fields = append(fields, kv{"peers_at_case_tol", c.PeersAtCaseTol})
	}
	for _, f := range fields {
		if err := put(f.k, f.v); err != nil {
			return err
		}
	}
	keys := make([]string, 0, len(c.Extra))
	for k := range c.Extra {
		if !isKnownCaseKey(k) {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	for _, k := range keys {
		if err := put(k, c.Extra[k]); err != nil {
			return err
		}
	}
	buf.WriteString("\n}\n")
	_, err := w.Write(buf.Bytes())
	return err
}

// keepFields records, from the decoded object v, the fields MarshalJSON
// would otherwise lose.
func (r *CaseReference) keepFields(v json.RawMessage) {
	var all map[string]json.RawMessage
	if json.Unmarshal(v, &all) != nil {
		return
	}
	rv := reflect.ValueOf(r).Elem()
	known := map[string]int{}
	for i := 0; i < rv.NumField(); i++ {
		if f := rv.Type().Field(i); f.IsExported() {
			name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
			known[name] = i
		}
	}
	for k, x := range all {
		if i, ok := known[k]; ok && !rv.Field(i).IsZero() {
			continue
		}
		if r.raw == nil {
			r.raw = map[string]json.RawMessage{}
		}
		r.raw[k] = compactJSON(x)
	}
}

// MarshalJSON writes the reference's fields in declaration order, leaving
// out zeros as before, except fields the case file spelled out; then the
// fields read with it that this type does not interpret, sorted by key. A
// read–write round trip therefore loses nothing.
func (r CaseReference) MarshalJSON() ([]byte, error) {
	rv := reflect.ValueOf(r)
	var buf bytes.Buffer
	buf.WriteByte('{')
	known := map[string]bool{}
	put := func(k string, v []byte) {
		if buf.Len() > 1 {
			buf.WriteByte(',')
		}
		kb, _ := json.Marshal(k)
		buf.Write(kb)
		buf.WriteByte(':')
		buf.Write(v)
	}
	for i := 0; i < rv.NumField(); i++ {
		f := rv.Type().Field(i)
		if !f.IsExported() {
			continue
		}
		name, opts, _ := strings.Cut(f.Tag.Get("json"), ",")
		known[name] = true
		_, inFile := r.raw[name]
		if opts == "omitempty" && rv.Field(i).IsZero() && !inFile {
			continue
		}
		v, err := json.Marshal(rv.Field(i).Interface())
		if err != nil {
			return nil, err
		}
		put(name, v)
	}
	extra := make([]string, 0, len(r.raw))
	for k := range r.raw {
		if !known[k] {
			extra = append(extra, k)
		}
	}
	sort.Strings(extra)
	for _, k := range extra {
		put(k, r.raw[k])
	}
	buf.WriteByte('}')
	return buf.Bytes(), nil
}

// ---------------------------------------------------------------------------
// Trained models
//
// A case describes a gradient problem; a model file holds only networks, so
// that saving a trained model needs no initial states, times, targets or
// tolerances. The format (JSON, version 1):
//
//	{"format": "neuralode-model", "version": 1, "name": "…",
//	 "networks": [{"name": "drift", "activation": "softplus",
//	               "time_input": "concat", "layers": [{"W": …, "b": …}, …]}, …],
//	 "meta": {"key": "value", …}}
//
// Layers are stored as in the case format (PyTorch nn.Linear order); the
// layer shapes define each network's architecture.

// ModelFormat is the value of a model file's "format" field.
const ModelFormat = "neuralode-model"

// Model is a set of named MLPs saved and loaded together, such as the drift
// and diffusion of a neural SDE, with free-form string metadata. To evaluate
// a loaded field at arbitrary times, pass it to Predict.
type Model struct {
	Name string
	MLPs map[string]*MLP   // the networks by name; names must be non-empty
	Meta map[string]string // free-form metadata (task, seed, epochs, …)
}

type modelFile struct {
	Format   string            `json:"format"`
	Version  int               `json:"version"`
	Name     string            `json:"name,omitempty"`
	Networks []modelNetwork    `json:"networks"`
	Meta     map[string]string `json:"meta,omitempty"`
}

type modelNetwork struct {
	Name       string      `json:"name"`
	Activation string      `json:"activation"`
	TimeInput  string      `json:"time_input"`
	Layers     []CaseLayer `json:"layers"`
}

// Write encodes the model (networks in name order). A nil or unnamed
// network, or a non-finite parameter, is an error and nothing is written.
// Numbers are written in the shortest form that reads back to the same
// float64, so a Write–ReadModel round trip is exact.
func (m *Model) Write(w io.Writer) error {
	if m == nil || len(m.MLPs) == 0 {
		return invalidf("model", "has no networks")
	}
	mf := modelFile{Format: ModelFormat, Version: 1, Name: m.Name, Meta: m.Meta}
	names := make([]string, 0, len(m.MLPs))
	for name := range m.MLPs {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		net := m.MLPs[name]
		field := fmt.Sprintf("model.MLPs[%q]", name)
		if name == "" || net == nil {
			return invalidf(field, "empty name or nil network")
		}
		if err := checkFinite(field, net.Params()); err != nil {
			return err
		}
		layers, err := UnflattenLayers(net, net.Params())
		if err != nil {
			return err
		}
		ti := "none"
		if net.cfg.TimeInput {
			ti = "concat"
		}
		mf.Networks = append(mf.Networks, modelNetwork{Name: name, Activation: net.cfg.Activation.String(), TimeInput: ti, Layers: layers})
	}
	data, err := json.MarshalIndent(mf, "", " ")
	if err != nil {
		return fmt.Errorf("neuralode: encoding model: %w", err)
	}
	_, err = w.Write(append(data, '\n'))
	return err
}

// ReadModel decodes and validates a model written by Model.Write. Anything
// else — malformed JSON, unknown fields, trailing data, another format or
// version, duplicate or empty names, layers that do not chain, non-finite
// weights — gives an *InputError naming the field, wrapping
// ErrInvalidInput (or ErrNonFinite).
func ReadModel(r io.Reader) (*Model, error) {
	dec := json.NewDecoder(r)
	dec.DisallowUnknownFields()
	var mf modelFile
	if err := dec.Decode(&mf); err != nil {
		return nil, &InputError{Field: "model", Reason: "malformed JSON: " + jsonReason(err), Err: ErrInvalidInput}
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, invalidf("model", "trailing data after the JSON object")
	}
	if mf.Format != ModelFormat {
		return nil, invalidf("format", "%q, want %q", mf.Format, ModelFormat)
	}
	if mf.Version != 1 {
		return nil, invalidf("version", "%d, this reader knows version 1", mf.Version)
	}
	if len(mf.Networks) == 0 {
		return nil, invalidf("networks", "missing or empty")
	}
	m := &Model{Name: mf.Name, MLPs: make(map[string]*MLP, len(mf.Networks)), Meta: mf.Meta}
	for i, nw := range mf.Networks {
		field := fmt.Sprintf("networks[%d]", i)
		if nw.Name == "" {
			return nil, invalidf(field+".name", "missing or empty")
		}
		if _, dup := m.MLPs[nw.Name]; dup {
			return nil, invalidf(field+".name", "%q appears twice", nw.Name)
		}
		act, err := ParseActivation(nw.Activation)
		if err != nil {
			return nil, invalidf(field+".activation", "unknown activation %q", nw.Activation)
		}
		if nw.TimeInput != "none" && nw.TimeInput != "concat" {
			return nil, invalidf(field+".time_input", "%q, want \"none\" or \"concat\"", nw.TimeInput)
		}
		nl := len(nw.Layers)
		if nl == 0 {
			return nil, invalidf(field+".layers", "missing or empty")
		}
		d := len(nw.Layers[nl-1].W)
		in := d
		if nw.TimeInput == "concat" {
			in++
		}
		if err := checkLayers(field+".layers", nw.Layers, in, d); err != nil {
			return nil, err
		}
		cfg := MLPConfig{Dim: d, Activation: act, TimeInput: nw.TimeInput == "concat"}
		for _, ly := range nw.Layers[:nl-1] {
			cfg.Hidden = append(cfg.Hidden, len(ly.W))
		}
		net, err := NewMLP(cfg, nil)
		if err != nil {
			return nil, &InputError{Field: field, Reason: err.Error(), Err: ErrInvalidInput}
		}
		if err := FlattenLayers(nw.Layers, net.Params()); err != nil {
			return nil, err
		}
		m.MLPs[nw.Name] = net
	}
	return m, nil
}

// Save writes the model to path atomically: into a temporary file in the
// same directory, synced and renamed over path, so a crash leaves either
// the old file or the new one (mode 0644).
func (m *Model) Save(path string) (err error) {
	var buf bytes.Buffer
	if err := m.Write(&buf); err != nil {
		return err
	}
	dir, base := filepath.Split(path)
	if dir == "" {
		dir = "."
	}
	f, err := os.CreateTemp(dir, "."+base+".tmp*")
	if err != nil {
		return fmt.Errorf("neuralode: saving model: %w", err)
	}
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(f.Name())
		}
	}()
	if _, err = f.Write(buf.Bytes()); err != nil {
		return fmt.Errorf("neuralode: saving model: %w", err)
	}
	// CreateTemp makes the file private; a model is an ordinary output.
	// Best effort: some platforms (wasip1) have no permission bits.
	_ = f.Chmod(0o644)
	if err = f.Sync(); err != nil {
		return fmt.Errorf("neuralode: saving model: %w", err)
	}
	if err = f.Close(); err != nil {
		return fmt.Errorf("neuralode: saving model: %w", err)
	}
	if err = os.Rename(f.Name(), path); err != nil {
		return fmt.Errorf("neuralode: saving model: %w", err)
	}
	return nil
}

// LoadModel reads a model file; see ReadModel. Errors name the path.
func LoadModel(path string) (*Model, error) {
	data, err := os.ReadFile(path)
	if err == nil {
		var m *Model
		if m, err = ReadModel(bytes.NewReader(data)); err == nil {
			return m, nil
		}
	}
	return nil, fmt.Errorf("neuralode: loading model %s: %w", path, err)
}
