package appliance

// replicationRoutes are the routes of issue 11: replication targets,
// the receiving side of appliance-to-appliance replication, append-only
// tokens, verification and the audit. Listed in openapi.json.
func (s *Server) replicationRoutes() []route {
	return []route{
		{method: "GET", pattern: "/api/v1/replicas", minRole: roleOperator, json: s.handleReplicaList},
		{method: "POST", pattern: "/api/v1/replicas", minRole: roleAdmin, json: s.handleReplicaCreate},
		{method: "DELETE", pattern: "/api/v1/replicas/{name}", minRole: roleAdmin, json: s.handleReplicaDelete},
		{method: "POST", pattern: "/api/v1/replicas/{name}/sync", minRole: roleOperator, json: s.handleReplicaSync},

		{method: "GET", pattern: "/api/v1/replica-tokens", minRole: roleAdmin, json: s.handleReplicaTokenList},
		{method: "POST", pattern: "/api/v1/replica-tokens", minRole: roleAdmin, json: s.handleReplicaTokenCreate},
		{method: "DELETE", pattern: "/api/v1/replica-tokens/{name}", minRole: roleAdmin, json: s.handleReplicaTokenDelete},

		// The receiving side: admins and append-only tokens (auth.go).
		{method: "GET", pattern: "/api/v1/replica/{pool}/list", minRole: roleAdmin, raw: s.handleReplicaRecvList},
		{method: "GET", pattern: "/api/v1/replica/{pool}/object/{name...}", minRole: roleAdmin, raw: s.handleReplicaRecvGet},
		{method: "PUT", pattern: "/api/v1/replica/{pool}/object/{name...}", minRole: roleAdmin, raw: s.handleReplicaRecvPut},
		{method: "DELETE", pattern: "/api/v1/replica/{pool}/object/{name...}", minRole: roleAdmin, raw: s.handleReplicaRecvDelete},
		{method: "GET", pattern: "/api/v1/replica/{pool}/retention", minRole: roleAdmin, json: s.handleReplicaRetentionGet},
		{method: "PUT", pattern: "/api/v1/replica/{pool}/retention", minRole: roleAdmin, json: s.handleReplicaRetentionPut},
		{method: "GET", pattern: "/api/v1/replica/{pool}/key", minRole: roleAdmin, json: s.handleReplicaKeyGet},
		{method: "PUT", pattern: "/api/v1/replica/{pool}/key", minRole: roleAdmin, json: s.handleReplicaKeyPut},
		{method: "DELETE", pattern: "/api/v1/replica/{pool}/key", minRole: roleAdmin, json: s.handleReplicaKeyDelete},

		{method: "GET", pattern: "/api/v1/verify", minRole: roleOperator, json: s.handleVerifyGet},
		{method: "POST", pattern: "/api/v1/verify/restore-test", minRole: roleOperator, json: s.handleRestoreTestRun},
		{method: "PUT", pattern: "/api/v1/verify/restore-test/schedule", minRole: roleAdmin, json: s.handleRestoreTestSchedule},
		{method: "GET", pattern: "/api/v1/audit", minRole: roleOperator, json: s.handleAudit},
	}
}
