// Package walk is the part of a directory puller's walk that does not
// depend on the protocol (pullers/sftp and pullers/smb use it): the
// pipeline from the walk to the sink, and a Lister that lists directories
// ahead of the walk.
//
// # Pipeline
//
// The walk (listing directories, deciding what to fetch, starting the
// fetches) runs on one goroutine, the producer; the sink is fed on
// another, the consumer (the caller of Pull), in walk order, from the
// items the producer sends (Pipe.Add, Pipe.File, Pipe.Fail); the files
// are fetched in between by an ahead.Fetcher's workers. A file whose
// previous entry has the same type, size and mtime is emitted with the
// previous content and not fetched, unless Config.Full says otherwise;
// when its content is gone from the pool, the consumer fetches it after
// all. A directory the sink rejects is stored without its subtree.
// Progress is reported under one lock, never concurrently.
//
// # Listing ahead
//
// A depth-first walk that lists one directory at a time waits for every
// listing's round trips in turn. A Lister lists the directories the walk
// will need next while it works: up to InFlight listings at once, always
// the first ones in walk order (depth first, names in byte order: the
// order of paths compared element by element) among the directories
// known so far. Each finished listing names the next directories
// (Config.Children). Memory stays bounded: at most Held listings are in
// flight or finished and not yet taken by the walk; a listing the walk
// asks for that was not listed ahead is listed at once, on the walk's
// goroutine, so the walk never waits for a slot. What the walk receives,
// and in which order, is the same as without listing ahead: only the
// waiting changes.
package walk
