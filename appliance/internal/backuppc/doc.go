// Package backuppc reads BackupPC 4 configuration without running Perl:
// the hosts file and the subset of Perl that config.pl and per-host .pl
// files use to set $Conf{Name}.
//
// # The Perl subset
//
// A file is a list of statements "$Conf{Name} = VALUE;" (the name may be
// quoted). VALUE is undef, a number (123, -1, 0.97, 1e3, 0x1F), a string
// ('…' with \\ and \' escapes, "…" with the usual backslash escapes and no
// $ or @ interpolation, q{…} / q(…) / q[…] / q<…> and any other delimiter),
// qw(…) word lists, integer ranges in lists ([1..5]), string concatenation with ".", array refs [ … ] and
// hash refs { KEY => VALUE, … } (keys barewords, numbers or strings; "," and
// "=>" both separate), nested to any depth, with trailing commas and
// # comments anywhere. Nothing is ever evaluated.
//
// Any other statement — backticks, "if" modifiers, references to other
// variables, interpolating strings, heredocs, function calls — is not
// guessed at: it is reported as a ParseError with file:line and the text,
// the parser skips to the statement's closing ";" (heredoc bodies are
// skipped whole) and goes on. Input is bounded (MaxFileSize, MaxDepth) so a
// hostile file fails cleanly.
package backuppc
