package main

import (
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sync"

	pulumirpc "github.com/pulumi/pulumi/sdk/v3/proto/go"
)

// RunPlugin starts a plugin written in Node.js: a policy pack (kind "analyzer", through
// @pulumi/pulumi/cmd/run-policy-pack) or any other plugin (through cmd/run-plugin). Its output is streamed
// back to the engine, which reads the plugin's gRPC port from it, and the exit code comes last.
func (h *languageHost) RunPlugin(
	req *pulumirpc.RunPluginRequest, server pulumirpc.LanguageRuntime_RunPluginServer,
) error {
	pluginDir, entryPoint := programLocation(req.GetInfo(), req.GetPwd(), req.GetProgram())
	program := filepath.Join(pluginDir, entryPoint)
	options := readRuntimeOptions(req.GetInfo().GetOptions())

	args := append([]string{}, options.nodeArgs...)
	if req.GetKind() == "analyzer" {
		// usage: run-policy-pack <engine-address> <program>; the engine sends its address as the only arg.
		script, err := findSDKScript(pluginDir, "run-policy-pack")
		if err != nil {
			return err
		}
		args = append(args, script)
		args = append(args, req.GetArgs()...)
		args = append(args, program)
	} else {
		// usage: run-plugin <program> [args the program sees as process.argv]
		script, err := findSDKScript(pluginDir, "run-plugin")
		if err != nil {
			return err
		}
		args = append(args, script, program)
		args = append(args, req.GetArgs()...)
	}

	cmd := exec.CommandContext(server.Context(), "node", args...)
	// Run inside the plugin's own folder so its node_modules and tsconfig.json are the ones used,
	// not those of the Pulumi project that loads it.
	cmd.Dir = pluginDir
	cmd.Env = append(os.Environ(), req.GetEnv()...)
	send := &lockedSender{}
	cmd.Stdout = send.writer(func(b []byte) error {
		return server.Send(&pulumirpc.RunPluginResponse{Output: &pulumirpc.RunPluginResponse_Stdout{Stdout: b}})
	})
	cmd.Stderr = send.writer(func(b []byte) error {
		return server.Send(&pulumirpc.RunPluginResponse{Output: &pulumirpc.RunPluginResponse_Stderr{Stderr: b}})
	})

	exitCode := int32(0)
	if err := cmd.Run(); err != nil {
		exit, ok := err.(*exec.ExitError)
		if !ok {
			return err
		}
		exitCode = int32(exit.ExitCode())
	}
	return server.Send(&pulumirpc.RunPluginResponse{Output: &pulumirpc.RunPluginResponse_Exitcode{Exitcode: exitCode}})
}

// InstallDependencies runs `npm install` in the program's folder (used by `pulumi install`).
func (h *languageHost) InstallDependencies(
	req *pulumirpc.InstallDependenciesRequest, server pulumirpc.LanguageRuntime_InstallDependenciesServer,
) error {
	dir := req.GetInfo().GetProgramDirectory()
	if dir == "" {
		dir = req.GetDirectory()
	}
	cmd := exec.CommandContext(server.Context(), "npm", "install")
	cmd.Dir = dir
	send := &lockedSender{}
	cmd.Stdout = send.writer(func(b []byte) error {
		return server.Send(&pulumirpc.InstallDependenciesResponse{Stdout: b})
	})
	cmd.Stderr = send.writer(func(b []byte) error {
		return server.Send(&pulumirpc.InstallDependenciesResponse{Stderr: b})
	})
	return cmd.Run()
}

// lockedSender serialises sends: exec copies stdout and stderr on two goroutines, and a gRPC stream must
// not be written from two goroutines at once.
type lockedSender struct {
	mu sync.Mutex
}

func (s *lockedSender) writer(send func([]byte) error) io.Writer {
	return writerFunc(func(b []byte) (int, error) {
		s.mu.Lock()
		defer s.mu.Unlock()
		// gRPC may keep the slice after Send returns; exec reuses its buffer.
		if err := send(append([]byte(nil), b...)); err != nil {
			return 0, err
		}
		return len(b), nil
	})
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(b []byte) (int, error) { return f(b) }
