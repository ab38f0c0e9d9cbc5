package appliance

import (
	_ "embed"
	"net/http"
)

// openAPIDoc is the API description, kept by hand next to the routes
// (TestOpenAPICoversRoutes keeps them in step).
//
//go:embed openapi.json
var openAPIDoc []byte

func handleOpenAPI(w http.ResponseWriter, r *http.Request, _ *principal) {
	w.Header().Set("Content-Type", "application/json")
	w.Write(openAPIDoc)
}
