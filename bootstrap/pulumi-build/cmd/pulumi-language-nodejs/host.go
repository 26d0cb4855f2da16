package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	pulumirpc "github.com/pulumi/pulumi/sdk/v3/proto/go"
	"google.golang.org/protobuf/types/known/emptypb"
	"google.golang.org/protobuf/types/known/structpb"
)

// languageHost implements the subset of pulumirpc.LanguageRuntimeServer the engine needs to run programs,
// dynamic providers and policy packs. Code generation RPCs stay unimplemented (the engine copes with that).
type languageHost struct {
	pulumirpc.UnimplementedLanguageRuntimeServer

	engineAddress string
	tracing       string
}

// bailExitCode is what @pulumi/pulumi's run scripts exit with after they already reported the error to the
// user; the engine then shows no extra "program failed" message.
const bailExitCode = 32

func (h *languageHost) Handshake(
	_ context.Context, req *pulumirpc.LanguageHandshakeRequest,
) (*pulumirpc.LanguageHandshakeResponse, error) {
	if req.GetEngineAddress() != "" {
		h.engineAddress = req.GetEngineAddress()
	}
	return &pulumirpc.LanguageHandshakeResponse{}, nil
}

func (h *languageHost) GetPluginInfo(context.Context, *emptypb.Empty) (*pulumirpc.PluginInfo, error) {
	return &pulumirpc.PluginInfo{Version: version}, nil
}

func (h *languageHost) Run(ctx context.Context, req *pulumirpc.RunRequest) (*pulumirpc.RunResponse, error) {
	programDir, entryPoint := programLocation(req.GetInfo(), req.GetPwd(), req.GetProgram())
	options := readRuntimeOptions(req.GetInfo().GetOptions())

	runScript, err := findSDKScript(programDir, "run")
	if err != nil {
		return &pulumirpc.RunResponse{Error: err.Error()}, nil
	}

	args := append([]string{}, options.nodeArgs...)
	args = append(args, runScript, "--monitor="+req.GetMonitorAddress())
	if h.engineAddress != "" {
		args = append(args, "--engine="+h.engineAddress)
	}
	for _, flag := range [][2]string{
		{"organization", req.GetOrganization()},
		{"project", req.GetProject()},
		{"stack", req.GetStack()},
		{"pwd", programDir},
		{"root-directory", req.GetInfo().GetRootDirectory()},
		{"tracing", h.tracing},
	} {
		if flag[1] != "" {
			args = append(args, "--"+flag[0]+"="+flag[1])
		}
	}
	if req.GetDryRun() {
		args = append(args, "--dry-run")
	}
	if req.GetParallel() > 1 {
		args = append(args, fmt.Sprintf("--parallel=%d", req.GetParallel()))
	}
	args = append(args, entryPoint)
	args = append(args, req.GetArgs()...)

	env, err := programEnv(req, options)
	if err != nil {
		return nil, err
	}

	cmd := exec.CommandContext(ctx, "node", args...)
	cmd.Dir = programDir
	cmd.Env = env
	// The engine captures the host's own stdout/stderr and shows them as program output.
	cmd.Stdout = os.Stdout
	cmd.Stderr = os.Stderr
	return runResponse(cmd.Run()), nil
}

// programEnv passes config the way @pulumi/pulumi reads it: as JSON in PULUMI_CONFIG and
// PULUMI_CONFIG_SECRET_KEYS, plus the TypeScript switches cmd/run looks at.
func programEnv(req *pulumirpc.RunRequest, options runtimeOptions) ([]string, error) {
	config, err := json.Marshal(req.GetConfig())
	if err != nil {
		return nil, err
	}
	secretKeys := req.GetConfigSecretKeys()
	if secretKeys == nil {
		secretKeys = []string{}
	}
	secrets, err := json.Marshal(secretKeys)
	if err != nil {
		return nil, err
	}
	env := append(os.Environ(),
		"PULUMI_CONFIG="+string(config),
		"PULUMI_CONFIG_SECRET_KEYS="+string(secrets),
		fmt.Sprintf("PULUMI_NODEJS_TYPESCRIPT=%t", options.typeScript),
	)
	if options.tsConfig != "" {
		env = append(env, "PULUMI_NODEJS_TSCONFIG_PATH="+options.tsConfig)
	}
	return env, nil
}

func runResponse(err error) *pulumirpc.RunResponse {
	if err == nil {
		return &pulumirpc.RunResponse{}
	}
	if exit, ok := err.(*exec.ExitError); ok {
		if exit.ExitCode() == bailExitCode {
			return &pulumirpc.RunResponse{Bail: true}
		}
		return &pulumirpc.RunResponse{Error: fmt.Sprintf("Program exited with non-zero exit code: %d", exit.ExitCode())}
	}
	return &pulumirpc.RunResponse{Error: fmt.Sprintf("Problem executing program (could not run language executor): %v", err)}
}

// programLocation returns the directory to run in and the entry point relative to it ("." lets cmd/run read
// package.json "main"). Newer engines send ProgramInfo; the plain fields are the older protocol.
func programLocation(info *pulumirpc.ProgramInfo, pwd, program string) (string, string) {
	dir := info.GetProgramDirectory()
	if dir == "" {
		dir = pwd
	}
	if dir == "" {
		dir, _ = os.Getwd()
	}
	entryPoint := info.GetEntryPoint()
	if entryPoint == "" {
		entryPoint = program
	}
	if entryPoint == "" {
		entryPoint = "."
	}
	return dir, entryPoint
}

// runtimeOptions are the `runtime.options` of Pulumi.yaml that change how node is started.
type runtimeOptions struct {
	typeScript bool
	tsConfig   string
	nodeArgs   []string
}

func readRuntimeOptions(options *structpb.Struct) runtimeOptions {
	result := runtimeOptions{typeScript: true}
	values := options.AsMap()
	if typeScript, ok := values["typescript"].(bool); ok {
		result.typeScript = typeScript
	}
	if tsConfig, ok := values["tsconfig"].(string); ok {
		result.tsConfig = tsConfig
	}
	if nodeArgs, ok := values["nodeargs"].(string); ok {
		result.nodeArgs = strings.Fields(nodeArgs)
	}
	return result
}

// findSDKScript finds @pulumi/pulumi/cmd/<name> the way node would from dir: in the nearest node_modules
// up the tree. Symlinked node_modules folders work, since only the path is checked.
func findSDKScript(dir, name string) (string, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return "", err
	}
	for current := abs; ; current = filepath.Dir(current) {
		script := filepath.Join(current, "node_modules", "@pulumi", "pulumi", "cmd", name)
		if _, err := os.Stat(filepath.Join(script, "index.js")); err == nil {
			return script, nil
		}
		if filepath.Dir(current) == current {
			break
		}
	}
	return "", fmt.Errorf("it looks like the Pulumi SDK has not been installed: no node_modules/@pulumi/pulumi/cmd/%s "+
		"above %s. Have you run npm install?", name, abs)
}
