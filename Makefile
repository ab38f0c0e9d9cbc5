# Cairn — the Makefile only delegates to go (and to apt-get for test deps).
GO       ?= go
VERSION  ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS  := -s -w -X main.version=$(VERSION)
DATA     ?= ./cairn-data
STATICCHECK := honnef.co/go/tools/cmd/staticcheck@v0.8.2
# Packages cheap enough for the race detector; the rest run without it.
RACE_PKGS  ?= ./pool/... ./pullers/... ./appliance/... ./fusefs/... ./images/...
PLAIN_PKGS ?= ./cmd/... ./internal/... ./iso/...

export CGO_ENABLED ?= 0

.PHONY: build run test test-race lint deps bench bench-compare fmt clean torture

build:
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o bin/cairn ./cmd/cairn

run: build
	./bin/cairn serve --data $(DATA)

# make test = deps, then the whole suite. Race-detected packages need cgo.
test: deps build
	CGO_ENABLED=1 $(GO) test -count=1 -race -timeout 40m $(RACE_PKGS)
	$(GO) test -count=1 -timeout 40m $(PLAIN_PKGS)

lint:
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	$(GO) run $(STATICCHECK) ./...

# deps installs what the tests need: Debian packages via apt-get as root
# (otherwise it prints the command), and the S3 test server into a cache
# outside the repo.
deps:
	@sh internal/testenv/install-deps.sh

bench: build
	$(GO) run ./internal/bench -out BENCHMARKS.md

# make bench-compare OLD=old.json NEW=bench/results.json
bench-compare:
	$(GO) run ./internal/bench -compare-old $(OLD) -compare-new $(NEW)

fmt:
	gofmt -w $$(git ls-files '*.go')

clean:
	rm -rf bin dist

# iso builds the appliance image dist/cairn-$(VERSION).iso (as root: debootstrap,
# chroot, mounts; `make deps` installs the tools). The Debian chroot is cached in
# ISO_CACHE, so a rebuild takes seconds. It prints the ISO's sha256.
ISO_CACHE ?= /var/cache/cairn-iso
iso: build
	$(GO) run ./iso/cmd/mkiso -cairn bin/cairn -version $(VERSION) -out dist/cairn-$(VERSION).iso -cache $(ISO_CACHE)

# iso-test boots that ISO in QEMU (TCG) and drives setup, the data disk, an SFTP
# backup, WebDAV and a reboot. `make test` runs the same test (iso.TestBoot, which
# builds its own ISO) when CI=true.
iso-test: iso
	CAIRN_ISO_TEST=1 CAIRN_ISO=$(CURDIR)/dist/cairn-$(VERSION).iso $(GO) test -count=1 -v -timeout 60m -run '^TestBoot$$' ./iso

# make torture = the long versions of internal/torture (crash loop, disk
# full, storage faults, bit rot, load) for TORTURE_TIME, then every fuzz
# target for FUZZTIME each. make test runs the short versions.
TORTURE_TIME ?= 10m
FUZZTIME     ?= 1m
torture: deps build
	TORTURE_TIME=$(TORTURE_TIME) $(GO) test -count=1 -v -timeout 6h ./internal/torture/...
	GO=$(GO) FUZZTIME=$(FUZZTIME) sh internal/torture/fuzz.sh
