package walk

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"

	"github.com/cairn-backup/cairn/pool"
	"github.com/cairn-backup/cairn/pullers"
	"github.com/cairn-backup/cairn/pullers/internal/ahead"
)

// Config is what a puller tells a Pipe.
type Config struct {
	Job      *pullers.Job
	Workers  int   // files fetched at once (ahead.New)
	MaxBytes int64 // file content buffered ahead of the sink (ahead.New)

	// Where names rel on the server for messages ("sftp host:/dir/f").
	Where func(rel string) string
	// Explain, when set, rewrites the errors recorded with the sink.
	Explain func(error) error
	// Full, when set, reports that the incremental skip is off for rel.
	Full func(rel string) bool
	// Fetch is the fetch of a file listed as e, on a worker.
	Fetch func(rel string, e pool.Entry) ahead.Func
	// Store (consumer) stores the file rel listed as e whose fetch is b.
	// It MUST close b, and calls Pipe.Added for what it stored.
	Store func(ctx context.Context, rel string, e pool.Entry, b *ahead.Buffer) error
	// Interrupted, when set, is the pull's error when ctx ends while the
	// consumer waits (default ctx.Err()).
	Interrupted func(ctx context.Context) error
	// Close ends every request still waiting for the server; Run calls it
	// once the consumer stopped, before it waits for the producer.
	Close func()
}

type itemKind uint8

const (
	itemAdd  itemKind = iota // a non-file entry
	itemFile                 // a file being fetched into buf
	itemSkip                 // a file reused from the previous snapshot
	itemErr                  // a per-file error
)

// item is one step of the walk, for the consumer.
type item struct {
	kind itemKind
	rel  string
	e    pool.Entry // itemSkip: the listed entry, skip is what to add
	skip pool.Entry
	buf  *ahead.Buffer
	err  error
}

// Pipe carries one pull's walk to its sink. Make one with New.
type Pipe struct {
	c       Config
	f       *ahead.Fetcher
	out     chan item
	walkErr error // the producer's, read after out is closed

	progMu sync.Mutex
	prog   pullers.Progress
}

// New returns a Pipe for c.
func New(c Config) *Pipe { return &Pipe{c: c} }

// Run starts the fetcher, runs walk on a new goroutine (the producer)
// and feeds the sink in walk order on this one until the walk ends or
// fails, or ctx ends. walk's ctx ends when the pull stops.
func (p *Pipe) Run(ctx context.Context, walk func(ctx context.Context) error) error {
	p.f = ahead.New(ctx, p.c.Workers, p.c.MaxBytes, 0)
	p.out = make(chan item, 256)
	done := make(chan struct{})
	go func() {
		defer close(done)
		defer close(p.out)
		p.walkErr = walk(p.f.Context())
	}()
	err := p.consume(ctx)
	// Stop the producer and the fetches: closing the session ends any
	// request still waiting for the server.
	p.f.Stop()
	if p.c.Close != nil {
		p.c.Close()
	}
	<-done
	p.f.Wait()
	if err != nil {
		return err
	}
	p.progMu.Lock()
	p.prog.Path = ""
	p.reportLocked()
	p.progMu.Unlock()
	return nil
}

func (p *Pipe) interrupted(ctx context.Context) error {
	if p.c.Interrupted != nil {
		return p.c.Interrupted(ctx)
	}
	return ctx.Err()
}

func (p *Pipe) consume(ctx context.Context) error {
	rejected := "" // a directory the sink rejected: its subtree is dropped
	for {
		var it item
		var ok bool
		select {
		case it, ok = <-p.out:
		case <-ctx.Done():
			return p.interrupted(ctx)
		}
		if !ok {
			if p.walkErr != nil && ctx.Err() != nil {
				return ctx.Err()
			}
			return p.walkErr
		}
		if err := ctx.Err(); err != nil {
			if it.buf != nil {
				it.buf.Close()
			}
			return err
		}
		if rejected != "" && strings.HasPrefix(it.rel, rejected+"/") {
			if it.buf != nil {
				it.buf.Close()
			}
			continue
		}
		var err error
		switch it.kind {
		case itemErr:
			p.RecordError(it.rel, it.err)
		case itemAdd:
			var ok bool
			ok, err = p.add(ctx, it.rel, it.e)
			if !ok && err == nil && it.e.Type == pool.TypeDir {
				rejected = it.rel
			}
		case itemSkip:
			err = p.storeSkip(ctx, it)
		case itemFile:
			err = p.c.Store(ctx, it.rel, it.e, it.buf)
		}
		if err != nil {
			return err
		}
	}
}

// emit hands it to the consumer (producer side).
func (p *Pipe) emit(ctx context.Context, it item) error {
	select {
	case p.out <- it:
		return nil
	case <-ctx.Done():
		if it.buf != nil {
			it.buf.Close()
		}
		return ctx.Err()
	}
}

// Fail (producer) records a per-file error for rel.
func (p *Pipe) Fail(ctx context.Context, rel string, err error) error {
	return p.emit(ctx, item{kind: itemErr, rel: rel, err: err})
}

// Add (producer) emits a non-file entry (a directory before its
// children).
func (p *Pipe) Add(ctx context.Context, rel string, e pool.Entry) error {
	p.setPath(rel)
	return p.emit(ctx, item{kind: itemAdd, rel: rel, e: e})
}

// File (producer) emits a regular file listed as e: reused when size and
// mtime match the previous snapshot, else fetched ahead.
func (p *Pipe) File(ctx context.Context, rel string, e pool.Entry) error {
	p.setPath(rel)
	if prev, ok := p.previous(ctx, rel); ok && (p.c.Full == nil || !p.c.Full(rel)) && prev.Type == pool.TypeFile &&
		prev.Size == e.Size && prev.ModTime == e.ModTime && e.Size > 0 && !prev.Content.IsZero() {
		skip := e
		skip.Content, skip.Chunked = prev.Content, prev.Chunked
		return p.emit(ctx, item{kind: itemSkip, rel: rel, e: e, skip: skip})
	}
	b, err := p.f.Start(e.Size, p.c.Fetch(rel, e))
	if err != nil {
		return err
	}
	return p.emit(ctx, item{kind: itemFile, rel: rel, e: e, buf: b})
}

// Refetch (consumer) fetches rel again, at once (ahead.Fetcher.Direct).
func (p *Pipe) Refetch(rel string, e pool.Entry) *ahead.Buffer {
	return p.f.Direct(e.Size, p.c.Fetch(rel, e))
}

func (p *Pipe) previous(ctx context.Context, rel string) (pool.Entry, bool) {
	if p.c.Job.Previous == nil {
		return pool.Entry{}, false
	}
	e, ok, err := p.c.Job.Previous.Lookup(ctx, rel)
	if err != nil || !ok {
		return pool.Entry{}, false
	}
	return e, true
}

// storeSkip (consumer) adds a reused file; when its content is gone from
// the pool, the file is read after all.
func (p *Pipe) storeSkip(ctx context.Context, it item) error {
	err := p.c.Job.Sink.Add(ctx, it.rel, it.skip, nil)
	if err == nil {
		p.progMu.Lock()
		p.prog.Skipped++
		p.progMu.Unlock()
		p.Added(&it.skip)
		return nil
	}
	if !errors.Is(err, pool.ErrContentMissing) || ctx.Err() != nil {
		return p.AddFailed(ctx, it.rel, err)
	}
	return p.c.Store(ctx, it.rel, it.e, p.Refetch(it.rel, it.e))
}

// add stores a non-file entry; a rejected entry is a per-file error.
func (p *Pipe) add(ctx context.Context, rel string, e pool.Entry) (bool, error) {
	if err := p.c.Job.Sink.Add(ctx, rel, e, nil); err != nil {
		return false, p.AddFailed(ctx, rel, err)
	}
	p.Added(&e)
	return true, nil
}

// AddFailed (consumer) handles the sink's error for rel: an entry it
// rejects (pool.ErrEntry) is a per-file error, anything else ends the
// pull.
func (p *Pipe) AddFailed(ctx context.Context, rel string, err error) error {
	if ctx.Err() != nil {
		return ctx.Err()
	}
	if errors.Is(err, pool.ErrEntry) {
		p.RecordError(rel, err)
		return nil
	}
	return fmt.Errorf("%s: store: %w", p.c.Where(rel), err)
}

// RecordError (consumer) records a per-file error with the sink.
func (p *Pipe) RecordError(rel string, err error) {
	if p.c.Explain != nil {
		err = p.c.Explain(err)
	}
	p.c.Job.Sink.RecordError(rel, fmt.Errorf("%s: %w", p.c.Where(rel), err))
	p.progMu.Lock()
	p.prog.Errors++
	p.reportLocked()
	p.progMu.Unlock()
}

// Added (consumer) counts an entry the sink stored.
func (p *Pipe) Added(e *pool.Entry) {
	p.progMu.Lock()
	p.prog.Files++
	if e.Type == pool.TypeFile {
		p.prog.Bytes += e.Size
	}
	p.reportLocked()
	p.progMu.Unlock()
}

// setPath reports rel as the current path: the producer calls it before
// it starts fetching rel, so a Progress hook that changes the source sees
// every later file fetched after it returns.
func (p *Pipe) setPath(rel string) {
	p.progMu.Lock()
	p.prog.Path = rel
	p.reportLocked()
	p.progMu.Unlock()
}

func (p *Pipe) reportLocked() {
	if p.c.Job.Progress != nil {
		p.c.Job.Progress(p.prog)
	}
}
