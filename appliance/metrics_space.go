package appliance

import (
	"path/filepath"

	"golang.org/x/sys/unix"
)

// poolSpaceMetrics reports the free and total space of the filesystem a
// directory pool lives on (S3 pools have no such figure): the disk-full
// alert of contrib/prometheus/cairn-storage-alerts.yml.
func (s *Server) poolSpaceMetrics(p *promWriter) {
	loc := s.pool.Location()
	if !filepath.IsAbs(loc) {
		return
	}
	var st unix.Statfs_t
	if unix.Statfs(loc, &st) != nil {
		return
	}
	labels := []string{"pool", s.pool.ID()}
	p.head("cairn_pool_filesystem_avail_bytes", "gauge", "Bytes the appliance may still write on the pool's filesystem (directory pools).")
	p.sample("cairn_pool_filesystem_avail_bytes", labels, float64(st.Bavail)*float64(st.Bsize))
	p.head("cairn_pool_filesystem_size_bytes", "gauge", "Size of the pool's filesystem (directory pools).")
	p.sample("cairn_pool_filesystem_size_bytes", labels, float64(st.Blocks)*float64(st.Bsize))
}
