package ftp

import (
	"bytes"
	"strings"
)

// lineSplitter cuts a listing stream into lines as it arrives, holding at
// most max bytes of one line: a longer line is reported by its first max
// bytes with long set, the rest dropped. Line ends are LF with an
// optional CR before it.
type lineSplitter struct {
	max  int
	fn   func(line string, long bool) bool
	buf  []byte
	long bool
	done bool // fn asked to stop
}

// write feeds p; it returns false once fn asked to stop.
func (l *lineSplitter) write(p []byte) bool {
	for len(p) > 0 && !l.done {
		i := bytes.IndexByte(p, '\n')
		if i < 0 {
			l.add(p)
			return !l.done
		}
		l.add(p[:i])
		p = p[i+1:]
		l.emit()
	}
	return !l.done
}

// flush emits a last line without a line end.
func (l *lineSplitter) flush() {
	if !l.done && (len(l.buf) > 0 || l.long) {
		l.emit()
	}
}

func (l *lineSplitter) add(p []byte) {
	if room := l.max - len(l.buf); len(p) > room {
		p = p[:max(room, 0)]
		l.long = true
	}
	l.buf = append(l.buf, p...)
}

func (l *lineSplitter) emit() {
	line := string(l.buf)
	if !l.long {
		line = strings.TrimSuffix(line, "\r")
	}
	if !l.fn(line, l.long) {
		l.done = true
	}
	l.buf, l.long = l.buf[:0], false
}
