package dbdump

import (
	"io"
	"os"
	"os/exec"
	"strconv"
	"sync"

	"golang.org/x/sys/unix"
)

// pipeSize is the kernel buffer asked for the pipe a dump tool writes
// into (Linux's pipe-max-size default; a pipe starts with 64 KiB), and
// the size of the blocks it is read in.
const pipeSize = 1 << 20

// aheadBlocks bounds how much of a dump is read ahead of the pool writer
// (blocks of pipeSize): the tool keeps writing while the writer chunks
// and hashes what came before.
const aheadBlocks = 4

// toolOutput reads a tool's stdout pipe ahead of its consumer, on its own
// goroutine, into at most aheadBlocks blocks. The write end is an
// *os.File, so os/exec hands it to the tool as is (no copying goroutine in
// between). At end of file it waits for the tool and returns its error
// instead of io.EOF when it failed, so a dump cut short by a failing tool
// is never taken for a whole one. One consumer at a time.
type toolOutput struct {
	f    *os.File
	full chan block
	free chan []byte
	stop chan struct{}
	wg   sync.WaitGroup

	cur  block
	off  int
	last error // the final block's error, once consumed

	done     <-chan error // run's result, sent after its write end is closed
	waitOnce sync.Once
	runErr   error
}

type block struct {
	data []byte
	err  error // after data: io.EOF, the tool's error, or a read error
}

// startTool makes the pipe, starts run with its write end and the
// read-ahead on its read end. run's result ends the stream.
func startTool(run func(w *os.File) error) (*toolOutput, error) {
	r, w, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	if rc, err := w.SyscallConn(); err == nil {
		// Best effort: a smaller pipe is only slower.
		rc.Control(func(fd uintptr) { unix.FcntlInt(fd, unix.F_SETPIPE_SZ, pipeSize) })
	}
	done := make(chan error, 1)
	go func() {
		err := run(w)
		w.Close() // the reader's end of file, once the tool's copy is closed too
		done <- err
	}()
	t := &toolOutput{f: r, full: make(chan block, aheadBlocks), free: make(chan []byte, aheadBlocks),
		stop: make(chan struct{}), done: done}
	for range aheadBlocks {
		t.free <- nil
	}
	t.wg.Add(1)
	go t.readAhead()
	return t, nil
}

// wait returns run's result, waiting for it.
func (t *toolOutput) wait() error {
	t.waitOnce.Do(func() { t.runErr = <-t.done })
	return t.runErr
}

func (t *toolOutput) readAhead() {
	defer t.wg.Done()
	for {
		var buf []byte
		select {
		case buf = <-t.free:
		case <-t.stop:
			return
		}
		if buf == nil {
			buf = make([]byte, pipeSize)
		}
		n, err := io.ReadFull(t.f, buf)
		if err == io.ErrUnexpectedEOF {
			err = io.EOF
		}
		if err == io.EOF {
			if terr := t.wait(); terr != nil {
				err = terr
			}
		}
		select {
		case t.full <- block{buf[:n], err}:
		case <-t.stop:
			return
		}
		if err != nil {
			return
		}
	}
}

func (t *toolOutput) Read(p []byte) (int, error) {
	for t.off == len(t.cur.data) {
		if t.last != nil {
			return 0, t.last
		}
		if t.cur.data != nil {
			t.free <- t.cur.data[:cap(t.cur.data)]
		}
		t.cur, t.off = <-t.full, 0
		if t.cur.err != nil {
			t.last = t.cur.err
		}
	}
	n := copy(p, t.cur.data[t.off:])
	t.off += n
	return n, nil
}

// close stops the read-ahead and closes the pipe (a tool still writing
// gets EPIPE).
func (t *toolOutput) close() {
	close(t.stop)
	t.f.Close()
	t.wg.Wait()
}

// stdbufOut is stdbuf's option for a pipeSize stdout buffer. The dump
// tools write through stdio, which buffers 4 KiB (a pipe's st_blksize): a
// 500 MB dump is 120,000 writes, each waking the reader. With a 1 MiB
// buffer the tool spends less time in write(2) and the reader reads
// whole blocks (see Streaming in doc.go).
var stdbufOut = "-o" + strconv.Itoa(pipeSize)

// stdbuf returns the path of a working coreutils stdbuf, or "" (not
// installed, or its preload library is missing: it then fails before
// running the tool, so it is tried once on true(1) first).
var stdbuf = sync.OnceValue(func() string {
	p, err := exec.LookPath("stdbuf")
	if err != nil {
		return ""
	}
	cmd := exec.Command(p, stdbufOut, "true")
	cmd.Env = []string{"PATH=/usr/bin:/bin"}
	if cmd.Run() != nil {
		return ""
	}
	return p
})
