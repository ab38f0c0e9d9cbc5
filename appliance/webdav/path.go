package webdav

import (
	"io/fs"
	"path"
	"strings"
	"unicode/utf8"
)

// CleanPath turns a slash path from a request (already URL-decoded, with or
// without a leading slash) into a valid io/fs name: "." for the root. It
// fails with fs.ErrNotExist for NUL bytes and invalid UTF-8, and resolves
// "." and ".." lexically so the result never leaves the root.
func CleanPath(name string) (string, error) {
	if strings.IndexByte(name, 0) >= 0 || !utf8.ValidString(name) {
		return "", &fs.PathError{Op: "open", Path: name, Err: fs.ErrNotExist}
	}
	p := path.Clean("/" + name)
	if p == "/" {
		return ".", nil
	}
	p = p[1:]
	if !fs.ValidPath(p) {
		return "", &fs.PathError{Op: "open", Path: name, Err: fs.ErrNotExist}
	}
	return p, nil
}
