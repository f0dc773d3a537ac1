package main

import (
	"bufio"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"io"
	"strings"

	"golang.org/x/crypto/bcrypt"
)

// minKeyLen matches the config's minimum for keys given through the environment.
const minKeyLen = 16

// readSecret reads one line from stdin: secrets never come from arguments, which land in shell
// history and in every process listing.
func readSecret(stdin io.Reader) (string, error) {
	line, err := bufio.NewReader(io.LimitReader(stdin, 4096)).ReadString('\n')
	if err != nil && err != io.EOF {
		return "", err
	}
	return strings.TrimRight(line, "\r\n"), nil
}

// hashKey prints the SHA-256 digest of an API key for consumers[].credentials.api_keys[].sha256,
// or makes a new random key first with -generate.
func hashKey(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	generate := len(args) == 1 && (args[0] == "-generate" || args[0] == "--generate")
	if len(args) > 0 && !generate {
		fmt.Fprintln(stderr, "usage: limen hash-key [-generate]   (the key is read from stdin)")
		return 2
	}
	var key string
	if generate {
		var b [32]byte
		if _, err := rand.Read(b[:]); err != nil {
			fmt.Fprintln(stderr, "limen:", err)
			return 1
		}
		key = base64.RawURLEncoding.EncodeToString(b[:])
		fmt.Fprintf(stdout, "key:    %s   (give this to the consumer; it is not stored anywhere)\n", key)
	} else {
		var err error
		if key, err = readSecret(stdin); err != nil {
			fmt.Fprintln(stderr, "limen:", err)
			return 1
		}
		if len(key) < minKeyLen {
			fmt.Fprintf(stderr, "limen: the key is shorter than %d characters; use limen hash-key -generate for a strong one\n", minKeyLen)
			return 1
		}
	}
	sum := sha256.Sum256([]byte(key))
	fmt.Fprintf(stdout, "sha256: %s\n", hex.EncodeToString(sum[:]))
	return 0
}

// hashPassword prints a bcrypt hash for consumers[].credentials.basic_auth[].password_hash.
func hashPassword(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	if len(args) > 0 {
		fmt.Fprintln(stderr, "usage: limen hash-password   (the password is read from stdin)")
		return 2
	}
	pw, err := readSecret(stdin)
	if err != nil {
		fmt.Fprintln(stderr, "limen:", err)
		return 1
	}
	if pw == "" || len(pw) > 72 {
		fmt.Fprintln(stderr, "limen: the password must be 1 to 72 bytes (bcrypt's limit)")
		return 1
	}
	h, err := bcrypt.GenerateFromPassword([]byte(pw), 12)
	if err != nil {
		fmt.Fprintln(stderr, "limen:", err)
		return 1
	}
	fmt.Fprintln(stdout, string(h))
	return 0
}
