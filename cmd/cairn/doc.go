// Command cairn wires the concrete types together: it may import every
// package of the module. Each verb lives in its own file (cmd_<verb>.go) and
// registers itself with register() in init.
package main
