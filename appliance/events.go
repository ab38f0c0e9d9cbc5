package appliance

import (
	"encoding/json"
	"sync"
)

// An Event is one message on the live event stream (SSE /api/v1/events):
// job state changes and progress.
type Event struct {
	Type  string `json:"type"` // "job", "progress", "log"
	JobID int64  `json:"job_id,omitempty"`
	Host  string `json:"host,omitempty"`
	Data  any    `json:"data,omitempty"`
}

// broker fans events out to subscribers. A slow subscriber loses events
// (its channel is full) rather than blocking a job.
type broker struct {
	mu     sync.Mutex
	subs   map[chan []byte]func(Event) bool
	closed bool
	done   chan struct{}
}

func newBroker() *broker {
	return &broker{subs: map[chan []byte]func(Event) bool{}, done: make(chan struct{})}
}

// subscribe returns a channel of encoded events accepted by filter, and a
// cancel function. The channel is closed when the broker closes.
func (b *broker) subscribe(filter func(Event) bool) (<-chan []byte, func()) {
	ch := make(chan []byte, 64)
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		close(ch)
		return ch, func() {}
	}
	b.subs[ch] = filter
	return ch, func() {
		b.mu.Lock()
		defer b.mu.Unlock()
		if _, ok := b.subs[ch]; ok {
			delete(b.subs, ch)
			close(ch)
		}
	}
}

func (b *broker) publish(e Event) {
	data, err := json.Marshal(e)
	if err != nil {
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	for ch, filter := range b.subs {
		if filter != nil && !filter(e) {
			continue
		}
		select {
		case ch <- data:
		default:
		}
	}
}

func (b *broker) close() {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return
	}
	b.closed = true
	close(b.done)
	for ch := range b.subs {
		close(ch)
		delete(b.subs, ch)
	}
}
