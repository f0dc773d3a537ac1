package bodylimit

import (
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/limen-gateway/limen/policies/internal/policytest"
	"github.com/limen-gateway/limen/policy"
)

// countingBody records whether anything read it.
type countingBody struct {
	io.Reader
	read int
}

func (b *countingBody) Read(p []byte) (int, error) {
	n, err := b.Reader.Read(p)
	b.read += n
	return n, err
}
func (b *countingBody) Close() error { return nil }

func TestBodyLimit(t *testing.T) {
	readAll := func(w http.ResponseWriter, r *http.Request) error {
		_, err := io.Copy(io.Discard, r.Body)
		return err
	}
	tests := []struct {
		name, config  string
		body          string
		contentLength int64 // -1: unknown (chunked)
		wantCode      string
		wantReached   bool
		wantMaxBytes  bool // next's read fails with *http.MaxBytesError
		wantUnread    bool // the body must not have been touched
	}{
		{name: "declared over the limit", config: `{"max": 10}`, body: strings.Repeat("x", 11), contentLength: 11, wantCode: "body_too_large", wantUnread: true},
		{name: "declared at the limit", config: `{"max": 10}`, body: strings.Repeat("x", 10), contentLength: 10, wantReached: true},
		{name: "declared with a unit", config: `{"max": "1KiB"}`, body: strings.Repeat("x", 1025), contentLength: 1025, wantCode: "body_too_large", wantUnread: true},
		{name: "chunked under", config: `{"max": "1KiB"}`, body: strings.Repeat("x", 1024), contentLength: -1, wantReached: true},
		{name: "chunked over is cut", config: `{"max": "1KiB"}`, body: strings.Repeat("x", 5000), contentLength: -1, wantReached: true, wantMaxBytes: true},
		{name: "no body", config: `{"max": 1}`, contentLength: 0, wantReached: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			p := policytest.MustBuild(t, Kind, tt.config)
			r := httptest.NewRequest("POST", "/", nil)
			body := &countingBody{Reader: strings.NewReader(tt.body)}
			if tt.body != "" {
				r.Body = body
			}
			r.ContentLength = tt.contentLength
			res := policytest.Serve(p, r, nil, readAll)
			if res.Reached != tt.wantReached {
				t.Errorf("reached = %v, want %v", res.Reached, tt.wantReached)
			}
			if tt.wantUnread && body.read != 0 {
				t.Errorf("%d body bytes were read before refusing", body.read)
			}
			var mbe *http.MaxBytesError
			switch {
			case tt.wantCode != "":
				pe := policytest.PolicyError(res.Err)
				if pe == nil || pe.Code != tt.wantCode || pe.Status != http.StatusRequestEntityTooLarge {
					t.Errorf("err = %v, want 413 %s", res.Err, tt.wantCode)
				}
			case tt.wantMaxBytes:
				if !errors.As(res.Err, &mbe) || body.read > 1024+4096 {
					t.Errorf("err = %v after reading %d bytes, want *http.MaxBytesError near the limit", res.Err, body.read)
				}
			case res.Err != nil:
				t.Errorf("err = %v", res.Err)
			}
		})
	}
}

// TestChunkedUpload sends a real chunked request over a socket: the handler's read must stop at
// the limit with *http.MaxBytesError.
func TestChunkedUpload(t *testing.T) {
	t.Parallel()
	p := policytest.MustBuild(t, Kind, `{"max": "64KiB"}`)
	got := make(chan error, 1)
	h := p.Wrap(policy.HandlerFunc(func(w http.ResponseWriter, r *http.Request) error {
		n, err := io.Copy(io.Discard, r.Body)
		if err == nil {
			err = errors.New("read the whole body")
		}
		var mbe *http.MaxBytesError
		if !errors.As(err, &mbe) || n != 64<<10 {
			got <- err
		} else {
			got <- nil
		}
		return err
	}))
	srv := httptest.NewServer(policy.Serve(h))
	defer srv.Close()
	pr, pw := io.Pipe()
	go func() {
		chunk := []byte(strings.Repeat("x", 4096))
		for range 64 { // 256KiB
			if _, err := pw.Write(chunk); err != nil {
				return
			}
		}
		pw.Close()
	}()
	req, _ := http.NewRequest("POST", srv.URL, pr)
	resp, err := http.DefaultClient.Do(req)
	if err == nil {
		resp.Body.Close()
	}
	pr.CloseWithError(errors.New("done"))
	if err := <-got; err != nil {
		t.Errorf("handler: %v", err)
	}
}

func TestConfig(t *testing.T) {
	for _, tt := range []struct {
		config, want string
		max          int64
	}{
		{config: `{"max": 1048576}`, max: 1 << 20},
		{config: `{"max": "1MiB"}`, max: 1 << 20},
		{config: `{"max": "1 MiB"}`, max: 1 << 20},
		{config: `{"max": "2GiB"}`, max: 2 << 30},
		{config: `{"max": "10KB"}`, max: 10000},
		{config: `{"max": "3MB"}`, max: 3000000},
		{config: `{"max": "1GB"}`, max: 1000000000},
		{config: `{"max": "512B"}`, max: 512},
		{config: `{"max": "512"}`, max: 512},
		{config: `{}`, want: "max is required"},
		{config: `{"max": 0}`, want: "max is required"},
		{config: `{"max": -1}`, want: "must not be negative"},
		{config: `{"max": "1mb"}`, want: `invalid size "1mb"`},
		{config: `{"max": "MiB"}`, want: "invalid size"},
		{config: `{"max": "+5"}`, want: "invalid size"},
		{config: `{"max": "9999999999GiB"}`, want: "invalid size"},
		{config: `{"max": true}`, want: "want a size"},
		{config: `{"max": 1, "min": 0}`, want: `unknown field "min"`},
	} {
		t.Run(tt.config, func(t *testing.T) {
			t.Parallel()
			p, err := policytest.Build(Kind, tt.config)
			if tt.want != "" {
				if err == nil || !strings.Contains(err.Error(), tt.want) {
					t.Fatalf("Build(%s) = %v, want an error containing %q", tt.config, err, tt.want)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if l := p.(*limit); l.max != tt.max {
				t.Errorf("max = %d, want %d", l.max, tt.max)
			}
		})
	}
}

func TestKind(t *testing.T) {
	t.Parallel()
	k, ok := policy.Lookup(Kind)
	if !ok || k.Phases != (policy.PhaseRange{Default: policy.Edge, Min: policy.Edge, Max: policy.Validate}) {
		t.Fatalf("registered %v, phases %+v", ok, k.Phases)
	}
}

func TestDocs(t *testing.T) {
	t.Parallel()
	policytest.CheckDocExamples(t, "../../docs/policies/body_limit.md", Kind)
}

func BenchmarkBodyLimit(b *testing.B) {
	p := policytest.MustBuild(b, Kind, `{"max": "1MiB"}`)
	h := p.Wrap(policy.HandlerFunc(func(http.ResponseWriter, *http.Request) error { return nil }))
	for _, bc := range []struct {
		name string
		cl   int64
	}{{"declared", 100}, {"too_large", 2 << 20}, {"chunked", -1}} {
		b.Run(bc.name, func(b *testing.B) {
			r := httptest.NewRequest("POST", "/", strings.NewReader("x"))
			body := r.Body
			r.ContentLength = bc.cl
			w := httptest.NewRecorder()
			b.ReportAllocs()
			for b.Loop() {
				r.Body = body
				_ = h.ServeHTTP(w, r)
			}
		})
	}
}

func TestDocExamples(t *testing.T) {
	policytest.CheckDocExamples(t, "../../docs/policies/body_limit.md", "body_limit")
}
