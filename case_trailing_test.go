package neuralode

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"strings"
	"testing"
)

// A case file with anything but white space after its JSON object is
// rejected: concatenated or half-overwritten files must not load silently.
func TestReadCaseRejectsTrailingData(t *testing.T) {
	data, err := os.ReadFile("testdata/cases/case1_d2_h16_b4.json")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ReadCase(bytes.NewReader(append(append([]byte(nil), data...), " \n\t"...))); err != nil {
		t.Fatalf("trailing white space rejected: %v", err)
	}
	for _, tail := range []string{"{}", "garbage", `{"name": "second"}`, "]"} {
		_, err := ReadCase(bytes.NewReader(append(append([]byte(nil), data...), tail...)))
		if !errors.Is(err, ErrInvalidInput) || !strings.Contains(err.Error(), "after the case") {
			t.Errorf("trailing %q: error %v, want ErrInvalidInput naming the trailing data", tail, err)
		}
	}
}

// Fields of "reference" the reader does not interpret, and known ones whose
// value is zero, survive a read–write round trip.
func TestCaseReferenceRoundTrip(t *testing.T) {
	data, err := os.ReadFile("testdata/cases/case1_d2_h16_b4.json")
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(data, &m); err != nil {
		t.Fatal(err)
	}
	ref := m["reference"].(map[string]any)
	ref["fwd_steps_rej"] = 0
	ref["peer_note"] = "kept"
	data, _ = json.Marshal(m)
	c, err := ReadCase(bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := c.Write(&buf); err != nil {
		t.Fatal(err)
	}
	var back map[string]any
	if err := json.Unmarshal(buf.Bytes(), &back); err != nil {
		t.Fatal(err)
	}
	r := back["reference"].(map[string]any)
	if v, ok := r["fwd_steps_rej"]; !ok || v != 0.0 {
		t.Errorf("fwd_steps_rej: %v (present %v), want 0", v, ok)
	}
	if r["peer_note"] != "kept" {
		t.Errorf("unknown reference field lost: %v", r)
	}
	// A value the program changed is written, not the one read.
	c.Ref.FwdStepsRej = 7
	buf.Reset()
	if err := c.Write(&buf); err != nil {
		t.Fatal(err)
	}
	json.Unmarshal(buf.Bytes(), &back)
	if v := back["reference"].(map[string]any)["fwd_steps_rej"]; v != 7.0 {
		t.Errorf("changed fwd_steps_rej written as %v, want 7", v)
	}
}
