package pool

import (
	"context"
	"fmt"
	"slices"
	"time"
)

// CheckpointOptions make a Writer commit its progress now and then, so a
// backup whose process dies (SIGKILL, power loss, a lost instance) leaves
// a usable partial snapshot: what was stored up to the last checkpoint.
// A checkpoint is triggered, between two Adds, when any set limit is
// reached since the previous one; zero limits are off (all zero: no
// periodic checkpoints, Writer.Checkpoint still works).
type CheckpointOptions struct {
	Every time.Duration // wall time
	Bytes int64         // file content bytes added
	Files int64         // non-directory entries added
	// OnCheckpoint, when set, is called (from the Add goroutine) with
	// each checkpoint manifest once it is durable, e.g. to index it.
	OnCheckpoint func(*Manifest)
}

// DefaultCheckpoint is a sensible setting for long backups: a checkpoint
// every minute or every GiB, whichever comes first.
var DefaultCheckpoint = CheckpointOptions{Every: time.Minute, Bytes: 1 << 30}

// WriterOptions tune a Writer beyond its snapshot metadata.
type WriterOptions struct {
	Checkpoint CheckpointOptions
}

// ckptState is a Writer's checkpoint bookkeeping (Add goroutine only).
type ckptState struct {
	opts         CheckpointOptions
	last         time.Time
	bytes, files int64 // totals at the last checkpoint
	written      bool  // a checkpoint manifest exists at snapshots/<id>
}

// NewWriterWith is NewWriter with options.
func (p *Pool) NewWriterWith(ctx context.Context, meta SnapshotMeta, o WriterOptions) (*Writer, error) {
	w, err := p.NewWriter(ctx, meta)
	if err != nil {
		return nil, err
	}
	w.ckpt.opts = o.Checkpoint
	w.ckpt.last = time.Now()
	return w, nil
}

// maybeCheckpoint writes a checkpoint when a limit is reached.
func (w *Writer) maybeCheckpoint(ctx context.Context) error {
	o := &w.ckpt.opts
	if o.Every <= 0 && o.Bytes <= 0 && o.Files <= 0 {
		return nil
	}
	due := o.Bytes > 0 && w.bytes.Load()-w.ckpt.bytes >= o.Bytes ||
		o.Files > 0 && w.files.Load()-w.ckpt.files >= o.Files ||
		o.Every > 0 && time.Since(w.ckpt.last) >= o.Every
	if !due {
		return nil
	}
	_, err := w.Checkpoint(ctx)
	return err
}

// Checkpoint commits what the Writer has stored so far as the manifest of
// its snapshot (same ID), with status partial and Checkpoint set: every
// open directory holds the entries added to it so far. It waits for the
// pending writes, syncs, writes the manifest and syncs again, so after a
// crash the snapshot is readable and complete as far as it goes. A later
// checkpoint replaces it, and Finish replaces it with the final manifest.
//
// Like Add, Checkpoint must be called from the goroutine that calls Add
// (between two Adds). An error is fatal to the Writer, as Add's storage
// errors are.
func (w *Writer) Checkpoint(ctx context.Context) (*Manifest, error) {
	if err := w.failed(); err != nil {
		return nil, err
	}
	if w.done {
		return nil, fmt.Errorf("snapshot %s: Checkpoint after Finish or Abort", w.id)
	}
	if !w.started || len(w.stack) == 0 {
		return nil, fmt.Errorf("snapshot %s: nothing to checkpoint yet", w.id)
	}
	// Trees of the open directories as they are now, innermost first.
	var child *Entry
	var root Digest
	for i := len(w.stack) - 1; i >= 0; i-- {
		od := w.stack[i]
		w.st.mu.Lock()
		es := slices.Clone(od.entries)
		w.st.mu.Unlock()
		if child != nil {
			es = append(es, *child)
		}
		sortEntries(es)
		data, err := appendTree(nil, es)
		if err != nil {
			err = fmt.Errorf("checkpoint of directory %q: %w", od.path, err)
			w.fail(err)
			return nil, err
		}
		d := w.p.Hash(data)
		if err := w.store(ctx, KindTree, d, data, nil, true, nil); err != nil {
			return nil, err
		}
		e := od.entry
		e.Subtree = d
		child, root = &e, d
	}
	w.budget.waitIdle()
	if err := w.failed(); err != nil {
		return nil, err
	}
	if err := w.p.Sync(ctx); err != nil {
		w.fail(err)
		return nil, w.failed()
	}
	m := w.manifest(root)
	m.Status, m.Checkpoint = StatusPartial, true
	if err := w.lock.verify(ctx); err != nil {
		err = fmt.Errorf("checkpoint of snapshot %s: %w", w.id, err)
		w.fail(err)
		return nil, w.failed()
	}
	if err := w.p.putManifest(ctx, m); err != nil {
		w.fail(err)
		return nil, w.failed()
	}
	if err := w.p.Sync(ctx); err != nil {
		w.fail(err)
		return nil, w.failed()
	}
	w.ckpt.written = true
	w.ckpt.last = time.Now()
	w.ckpt.bytes, w.ckpt.files = w.bytes.Load(), w.files.Load()
	if w.ckpt.opts.OnCheckpoint != nil {
		w.ckpt.opts.OnCheckpoint(m)
	}
	return m, nil
}

// Checkpointed reports whether a checkpoint manifest was written (and not
// yet replaced by Finish or removed by Abort).
func (w *Writer) Checkpointed() bool { return w.ckpt.written && !w.done }

// manifest builds the manifest for root from the running totals.
func (w *Writer) manifest(root Digest) *Manifest {
	st := w.Stats()
	w.emu.Lock()
	m := &Manifest{
		ID: w.id, Host: w.meta.Host, Source: w.meta.Source,
		Start: w.meta.Start, End: time.Now().UTC(), Root: root, Status: StatusComplete,
		Files: st.Files, Dirs: st.Dirs, Bytes: st.Bytes, BytesNew: st.BytesNew,
		Errors: append([]string(nil), w.errs...), ErrorCount: w.errCount,
		Labels: w.meta.Labels, Format: ManifestFormat,
	}
	w.emu.Unlock()
	if re, err := encodeRootEntry(w.rootE, m.Source, m.Root); err == nil {
		m.RootEntry = re
	} else {
		m.ErrorCount++
		if len(m.Errors) < maxRecordedErrors {
			m.Errors = append(m.Errors, ".: root directory metadata not stored: "+err.Error())
		}
	}
	if m.ErrorCount > 0 {
		m.Status = StatusPartial
	}
	return m
}

// dropCheckpoint removes the checkpoint manifest of an aborted writer.
func (w *Writer) dropCheckpoint() {
	if !w.ckpt.written {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if w.p.DeleteSnapshot(ctx, w.id) == nil {
		w.ckpt.written = false
	}
}

// waitIdle waits until every queued write has finished. Only the Add
// goroutine waits on the budget, so release's Signal reaches it.
func (b *byteBudget) waitIdle() {
	b.mu.Lock()
	for b.avail < b.max {
		b.cond.Wait()
	}
	b.mu.Unlock()
}
