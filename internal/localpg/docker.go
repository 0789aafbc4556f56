package localpg

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/ory/dockertest/v3"
	"github.com/ory/dockertest/v3/docker"
)

// startDocker runs the official postgres:15 image, for laptops that have a
// Docker engine but not the server binaries. The container is removed on
// Stop; cfg.Dir is not used.
func startDocker(ctx context.Context, cfg Config) (*Server, error) {
	pool, err := dockertest.NewPool("")
	if err != nil {
		return nil, err
	}
	if err := pool.Client.Ping(); err != nil {
		return nil, fmt.Errorf("docker engine: %w", err)
	}
	cmd := []string{"postgres"}
	for k, v := range cfg.Settings {
		cmd = append(cmd, "-c", k+"="+v)
	}
	res, err := pool.RunWithOptions(&dockertest.RunOptions{
		Repository: "postgres",
		Tag:        "15",
		Env:        []string{"POSTGRES_HOST_AUTH_METHOD=trust"},
		Cmd:        cmd,
	}, func(hc *docker.HostConfig) {
		hc.AutoRemove = true
		hc.RestartPolicy = docker.RestartPolicy{Name: "no"}
	})
	if err != nil {
		return nil, fmt.Errorf("start postgres container: %w", err)
	}
	u := fmt.Sprintf("postgres://postgres@%s/postgres?sslmode=disable", res.GetHostPort("5432/tcp"))
	pool.MaxWait = time.Minute
	if err := pool.Retry(func() error {
		conn, err := pgx.Connect(ctx, u)
		if err != nil {
			return err
		}
		return conn.Close(ctx)
	}); err != nil {
		_ = pool.Purge(res)
		return nil, fmt.Errorf("postgres container never became ready: %w", err)
	}
	return &Server{
		URL:     u,
		Started: true,
		stop:    func(context.Context) error { return pool.Purge(res) },
	}, nil
}
