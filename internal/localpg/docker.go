package localpg

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/ory/dockertest/v3"
	"github.com/ory/dockertest/v3/docker"
)

// ErrNoEngine is returned by StartContainer when no Docker API answers
// (DOCKER_HOST, else the default socket).
var ErrNoEngine = errors.New("no Docker engine answers")

// DefaultImage is the PostgreSQL image a container runs when neither
// Config.Image nor POINTSD_POSTGRES_IMAGE names one.
const DefaultImage = "postgres:15"

// StartContainer runs PostgreSQL in a container through the Docker API
// (a Docker engine, or podman's: see internal/scripts/ensure-podman.sh),
// for machines that have an engine but not the server binaries. The image
// must keep the official image's contract (POSTGRES_HOST_AUTH_METHOD,
// server flags as the command); it is pulled when missing. The server
// listens on 127.0.0.1 only; the container is removed on Stop. cfg.Dir and
// cfg.Port are not used.
func StartContainer(ctx context.Context, cfg Config) (*Server, error) {
	pool, err := dockertest.NewPool("")
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrNoEngine, err)
	}
	if err := pool.Client.PingWithContext(ctx); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrNoEngine, err)
	}
	repo, tag := imageOf(cfg)
	cmd := []string{"postgres"}
	for k, v := range cfg.Settings {
		cmd = append(cmd, "-c", k+"="+v)
	}
	res, err := pool.RunWithOptions(&dockertest.RunOptions{
		Repository:   repo,
		Tag:          tag,
		Env:          []string{"POSTGRES_HOST_AUTH_METHOD=trust"},
		Cmd:          cmd,
		ExposedPorts: []string{"5432/tcp"},
		PortBindings: map[docker.Port][]docker.PortBinding{"5432/tcp": {{HostIP: "127.0.0.1"}}},
	}, func(hc *docker.HostConfig) {
		hc.AutoRemove = true
		hc.RestartPolicy = docker.RestartPolicy{Name: "no"}
	})
	if err != nil {
		return nil, fmt.Errorf("start a %s:%s container: %w", repo, tag, err)
	}
	u := fmt.Sprintf("postgres://postgres@%s/postgres?sslmode=disable",
		net.JoinHostPort("127.0.0.1", res.GetPort("5432/tcp")))
	pool.MaxWait = time.Minute
	if err := pool.Retry(func() error {
		conn, err := pgx.Connect(ctx, u)
		if err != nil {
			return err
		}
		return conn.Close(ctx)
	}); err != nil {
		_ = pool.Purge(res) // it never served: nothing in it to keep
		return nil, fmt.Errorf("the %s:%s container never became ready: %w", repo, tag, err)
	}
	return &Server{
		URL:     u,
		Started: true,
		stop:    func(context.Context) error { return pool.Purge(res) },
	}, nil
}

// imageOf splits the image to run into repository and tag.
func imageOf(cfg Config) (repo, tag string) {
	image := cfg.Image
	if image == "" {
		image = os.Getenv("POINTSD_POSTGRES_IMAGE")
	}
	if image == "" {
		image = DefaultImage
	}
	// A colon after the last slash starts the tag (a registry's port comes
	// before it).
	if i := strings.LastIndex(image, ":"); i > strings.LastIndex(image, "/") {
		return image[:i], image[i+1:]
	}
	return image, "latest"
}
