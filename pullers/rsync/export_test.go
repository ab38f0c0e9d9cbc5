package rsync

// Encoders of the protocol-30 integers, for the scripted senders in tests.
var (
	AppendVarint  = appendVarint
	AppendVarlong = appendVarlong
	AppendVstring = appendVstring
)

// NdxEnc writes file-list indexes as a sender does.
type NdxEnc struct{ c ndxCodec }

func NewNdxEnc() *NdxEnc { return &NdxEnc{newNdxCodec()} }

func (e *NdxEnc) Append(b []byte, ndx int32) []byte { return e.c.appendNdx(b, ndx) }
