// Package images is the block-image pool: fixed 4 MiB aligned blocks,
// all-zero blocks elided, an image version as an ordered list of block
// digests. Its format is documented in FORMAT.md.
//
// # Imports
//
// images may import pool only.
package images
