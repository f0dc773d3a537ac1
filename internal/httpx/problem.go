// Package httpx holds small HTTP helpers shared by the server, the runtime and the proxy: the
// problem+json / gRPC error renderer, a status-recording ResponseWriter, client-IP and Forwarded
// parsing, and path and host normalization.
package httpx

import (
	"errors"
	"net/http"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/limen-gateway/limen/policy"
)

// headersDroppedOnError are representation headers a failed handler may have set for a body that
// will never be sent.
var headersDroppedOnError = []string{"Content-Length", "Content-Encoding", "Content-Range", "ETag", "Last-Modified", "Content-Disposition"}

// WriteProblem writes an RFC 9457 problem+json response (or a gRPC status for gRPC clients),
// keeping headers outer handlers already set.
func WriteProblem(w http.ResponseWriter, r *http.Request, status int, code, detail string) {
	h := w.Header()
	for _, k := range headersDroppedOnError {
		h.Del(k)
	}
	if isGRPC(r) {
		writeGRPCStatus(w, status, detail)
		return
	}
	body := make([]byte, 0, 192)
	body = append(body, `{"type":"https://limen.dev/problems/`...)
	body = append(body, code...)
	body = append(body, `","title":`...)
	body = appendJSONString(body, http.StatusText(status))
	body = append(body, `,"status":`...)
	body = strconv.AppendInt(body, int64(status), 10)
	body = append(body, `,"code":`...)
	body = appendJSONString(body, code)
	if detail != "" {
		body = append(body, `,"detail":`...)
		body = appendJSONString(body, detail)
	}
	if id := policy.RequestIDFrom(r.Context()); id != "" {
		body = append(body, `,"request_id":`...)
		body = appendJSONString(body, id)
	}
	body = append(body, "}\n"...)
	h.Set("Content-Type", "application/problem+json")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Cache-Control", "no-store")
	h.Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(status)
	if r.Method != http.MethodHead {
		_, _ = w.Write(body)
	}
}

// WriteError renders err once: a *policy.Error as itself (its headers merged in), a
// *http.MaxBytesError as 413, anything else as a generic 500 that does not leak the cause.
func WriteError(w http.ResponseWriter, r *http.Request, err error) (status int, code string) {
	var pe *policy.Error
	var mbe *http.MaxBytesError
	switch {
	case errors.As(err, &pe):
		for k, v := range pe.Header {
			w.Header()[k] = v
		}
		status, code = pe.Status, pe.Code
		if status < 400 || status > 599 {
			status = http.StatusInternalServerError
		}
		WriteProblem(w, r, status, code, pe.Detail)
	case errors.As(err, &mbe):
		status, code = http.StatusRequestEntityTooLarge, "body_too_large"
		WriteProblem(w, r, status, code, "the request body exceeds "+strconv.FormatInt(mbe.Limit, 10)+" bytes")
	default:
		status, code = http.StatusInternalServerError, "internal_error"
		WriteProblem(w, r, status, code, "the gateway failed to handle the request")
	}
	return status, code
}

func isGRPC(r *http.Request) bool {
	ct := r.Header.Get("Content-Type")
	return strings.HasPrefix(ct, "application/grpc")
}

// grpcCode maps an HTTP status to the gRPC status code clients expect (gRPC's HTTP mapping, with
// the gateway-specific ones from DESIGN.md).
func grpcCode(status int) int {
	switch status {
	case 400:
		return 3 // INVALID_ARGUMENT
	case 401:
		return 16 // UNAUTHENTICATED
	case 403:
		return 7 // PERMISSION_DENIED
	case 404:
		return 12 // UNIMPLEMENTED
	case 413, 429:
		return 8 // RESOURCE_EXHAUSTED
	case 502, 503:
		return 14 // UNAVAILABLE
	case 504:
		return 4 // DEADLINE_EXCEEDED
	}
	return 2 // UNKNOWN
}

// writeGRPCStatus answers a gRPC call with a trailers-only response: HTTP 200 whose headers carry
// grpc-status and grpc-message.
func writeGRPCStatus(w http.ResponseWriter, status int, msg string) {
	h := w.Header()
	h.Set("Content-Type", "application/grpc")
	h.Set("Grpc-Status", strconv.Itoa(grpcCode(status)))
	if msg != "" {
		h.Set("Grpc-Message", grpcEncode(msg))
	}
	w.WriteHeader(http.StatusOK)
}

// grpcEncode percent-encodes a grpc-message as the gRPC spec requires.
func grpcEncode(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 0x20 && c <= 0x7e && c != '%' {
			b.WriteByte(c)
			continue
		}
		b.WriteByte('%')
		b.WriteByte("0123456789ABCDEF"[c>>4])
		b.WriteByte("0123456789ABCDEF"[c&15])
	}
	return b.String()
}

// appendJSONString appends s as a JSON string literal.
func appendJSONString(dst []byte, s string) []byte {
	const hex = "0123456789abcdef"
	dst = append(dst, '"')
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			switch {
			case c == '"' || c == '\\':
				dst = append(dst, '\\', c)
			case c < 0x20 || c == '<' || c == '>' || c == '&':
				dst = append(dst, '\\', 'u', '0', '0', hex[c>>4], hex[c&15])
			default:
				dst = append(dst, c)
			}
			i++
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			dst = append(dst, `\ufffd`...)
		} else {
			dst = append(dst, s[i:i+size]...)
		}
		i += size
	}
	return append(dst, '"')
}
