package main

import (
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"time"

	"golang.org/x/term"
)

// progress shows a long operation's advance on stderr: a bar redrawn in
// place on a terminal, a plain line every lineEvery otherwise (logs, CI).
// Counters are set with Set from any goroutine; a ticker draws them.
type progress struct {
	w         io.Writer
	tty       bool
	verb      string // "snapshot", "restore", …
	drawEvery time.Duration
	lineEvery time.Duration
	now       func() time.Time

	mu         sync.Mutex
	start      time.Time
	totalBytes int64 // estimate; 0 = unknown
	st         progressState
	lastLine   time.Time
	width      int

	stop chan struct{}
	done chan struct{}
}

// progressState is one sample of an operation's counters.
type progressState struct {
	Files, Bytes, Skipped, Errors int64
	Path                          string
}

// newProgress returns a progress display for verb on stderr. totalBytes
// is an estimate for the bar and ETA (0 if unknown). CAIRN_PROGRESS=none
// silences it, =lines forces plain lines, =bar forces the bar.
func newProgress(verb string, totalBytes int64) *progress {
	fd := int(os.Stderr.Fd())
	tty := term.IsTerminal(fd)
	width := 80
	if tty {
		if w, _, err := term.GetSize(fd); err == nil && w > 20 {
			width = w
		}
	}
	p := &progress{w: os.Stderr, tty: tty, verb: verb, totalBytes: totalBytes, width: width,
		drawEvery: 200 * time.Millisecond, lineEvery: 10 * time.Second, now: time.Now}
	switch os.Getenv("CAIRN_PROGRESS") {
	case "none":
		p.w = io.Discard
	case "lines":
		p.tty = false
		p.lineEvery = time.Second
	case "bar":
		p.tty = true
	}
	return p
}

// Start begins drawing. Stop must be called.
func (p *progress) Start() {
	p.start = p.now()
	p.lastLine = p.start
	p.stop, p.done = make(chan struct{}), make(chan struct{})
	if p.tty {
		p.tick() // the bar shows at once, not after the first interval
	}
	go func() {
		defer close(p.done)
		t := time.NewTicker(p.drawEvery)
		defer t.Stop()
		for {
			select {
			case <-p.stop:
				return
			case <-t.C:
				p.tick()
			}
		}
	}()
}

// Set records the current counters.
func (p *progress) Set(s progressState) {
	p.mu.Lock()
	p.st = s
	p.mu.Unlock()
}

func (p *progress) tick() {
	p.mu.Lock()
	defer p.mu.Unlock()
	now := p.now()
	if p.tty {
		fmt.Fprintf(p.w, "\r\x1b[K%s", p.barLocked(now))
		return
	}
	if now.Sub(p.lastLine) >= p.lineEvery {
		p.lastLine = now
		fmt.Fprintf(p.w, "cairn %s: %s\n", p.verb, p.lineLocked(now))
	}
}

// Stop stops drawing and clears the bar.
func (p *progress) Stop() {
	if p.stop == nil {
		return
	}
	close(p.stop)
	<-p.done
	p.stop = nil
	if p.tty {
		fmt.Fprint(p.w, "\r\x1b[K")
	}
}

// clear returns what erases the bar before another line is printed: the
// escape on a terminal, nothing otherwise (no escapes in logs).
func (p *progress) clear() string {
	if p != nil && p.tty && p.w != io.Discard {
		return "\r\x1b[K"
	}
	return ""
}

// Elapsed is the time since Start.
func (p *progress) Elapsed() time.Duration { return p.now().Sub(p.start) }

func (p *progress) rateETA(now time.Time) (rate float64, eta string) {
	el := now.Sub(p.start).Seconds()
	if el > 0 {
		rate = float64(p.st.Bytes) / el
	}
	if p.totalBytes > 0 && rate > 0 && p.st.Bytes < p.totalBytes {
		eta = fmtDuration(time.Duration(float64(p.totalBytes-p.st.Bytes) / rate * float64(time.Second)))
	}
	return rate, eta
}

// lineLocked is the plain-text form: counters, rate, ETA, current path.
func (p *progress) lineLocked(now time.Time) string {
	rate, eta := p.rateETA(now)
	var b strings.Builder
	fmt.Fprintf(&b, "%d files, %s", p.st.Files, fmtBytes(p.st.Bytes))
	if p.totalBytes > 0 {
		fmt.Fprintf(&b, " of ~%s", fmtBytes(p.totalBytes))
	}
	fmt.Fprintf(&b, ", %s/s", fmtBytes(int64(rate)))
	if p.st.Skipped > 0 {
		fmt.Fprintf(&b, ", %d unchanged", p.st.Skipped)
	}
	if p.st.Errors > 0 {
		fmt.Fprintf(&b, ", %d errors", p.st.Errors)
	}
	if eta != "" {
		fmt.Fprintf(&b, ", ETA %s", eta)
	}
	if p.st.Path != "" {
		fmt.Fprintf(&b, ", at %s", quoteName(p.st.Path))
	}
	return b.String()
}

// barLocked is the terminal form, fitted to the width.
func (p *progress) barLocked(now time.Time) string {
	rate, eta := p.rateETA(now)
	stats := fmt.Sprintf(" %d files %s %s/s", p.st.Files, fmtBytes(p.st.Bytes), fmtBytes(int64(rate)))
	if p.st.Errors > 0 {
		stats += fmt.Sprintf(" %d err", p.st.Errors)
	}
	if eta != "" {
		stats += " ETA " + eta
	}
	bar := ""
	if p.totalBytes > 0 {
		frac := float64(p.st.Bytes) / float64(p.totalBytes)
		frac = min(max(frac, 0), 1)
		const n = 24
		full := int(frac * n)
		bar = fmt.Sprintf("[%s%s] %3d%%", strings.Repeat("=", full), strings.Repeat(" ", n-full), int(frac*100))
	} else {
		bar = fmt.Sprintf("[%s]", fmtDuration(now.Sub(p.start)))
	}
	s := bar + stats
	if room := p.width - 1 - len(s) - 1; room > 8 && p.st.Path != "" {
		path := quoteName(p.st.Path)
		if len(path) > room {
			path = "…" + path[len(path)-room+1:]
		}
		s += " " + path
	}
	if len(s) > p.width-1 {
		s = s[:p.width-1]
	}
	return s
}

// fmtBytes formats a byte count with binary units.
func fmtBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit && exp < 5; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}

// fmtDuration formats d as h:mm:ss or m:ss.
func fmtDuration(d time.Duration) string {
	s := int64(d.Round(time.Second) / time.Second)
	if s >= 3600 {
		return fmt.Sprintf("%d:%02d:%02d", s/3600, s/60%60, s%60)
	}
	return fmt.Sprintf("%d:%02d", s/60, s%60)
}
