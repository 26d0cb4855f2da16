package main

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"

	pulumirpc "github.com/pulumi/pulumi/sdk/v3/proto/go"
)

// packageJSON holds the package.json fields this host reads.
type packageJSON struct {
	Name            string            `json:"name"`
	Version         string            `json:"version"`
	Dependencies    map[string]string `json:"dependencies"`
	DevDependencies map[string]string `json:"devDependencies"`
	Pulumi          *struct {
		Resource         bool   `json:"resource"`
		Name             string `json:"name"`
		Version          string `json:"version"`
		Server           string `json:"server"`
		Parameterization *struct {
			Name    string `json:"name"`
			Version string `json:"version"`
			Value   string `json:"value"` // base64
		} `json:"parameterization"`
	} `json:"pulumi"`
}

func readPackageJSON(path string) (*packageJSON, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var pkg packageJSON
	if err := json.Unmarshal(data, &pkg); err != nil {
		return nil, err
	}
	return &pkg, nil
}

// GetRequiredPackages lists the resource plugins that installed Pulumi packages declare in their package.json
// ("pulumi": {"resource": true, ...}), so the engine can make sure they are there before the program runs.
func (h *languageHost) GetRequiredPackages(
	_ context.Context, req *pulumirpc.GetRequiredPackagesRequest,
) (*pulumirpc.GetRequiredPackagesResponse, error) {
	dir, _ := programLocation(req.GetInfo(), "", "")
	var packages []*pulumirpc.PackageDependency
	for _, pkgPath := range installedPackageFiles(dir) {
		pkg, err := readPackageJSON(pkgPath)
		if err != nil || pkg.Pulumi == nil || !pkg.Pulumi.Resource {
			continue
		}
		dep := &pulumirpc.PackageDependency{
			Kind:    "resource",
			Name:    pkg.Pulumi.Name,
			Version: pkg.Pulumi.Version,
			Server:  pkg.Pulumi.Server,
		}
		if dep.Name == "" {
			dep.Name = strings.TrimPrefix(pkg.Name, "@pulumi/")
		}
		if dep.Version == "" {
			dep.Version = pkg.Version
		}
		if p := pkg.Pulumi.Parameterization; p != nil {
			value, err := base64.StdEncoding.DecodeString(p.Value)
			if err != nil {
				continue
			}
			dep.Parameterization = &pulumirpc.PackageParameterization{Name: p.Name, Version: p.Version, Value: value}
		}
		packages = append(packages, dep)
	}
	return &pulumirpc.GetRequiredPackagesResponse{Packages: packages}, nil
}

// installedPackageFiles returns the package.json of every top-level package (scoped ones included) in the
// nearest node_modules above dir.
func installedPackageFiles(dir string) []string {
	modules := nearestNodeModules(dir)
	if modules == "" {
		return nil
	}
	var files []string
	entries, _ := os.ReadDir(modules)
	for _, entry := range entries {
		name := entry.Name()
		if strings.HasPrefix(name, "@") {
			scoped, _ := os.ReadDir(filepath.Join(modules, name))
			for _, inner := range scoped {
				files = append(files, filepath.Join(modules, name, inner.Name(), "package.json"))
			}
		} else if !strings.HasPrefix(name, ".") {
			files = append(files, filepath.Join(modules, name, "package.json"))
		}
	}
	sort.Strings(files)
	return files
}

func nearestNodeModules(dir string) string {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return ""
	}
	for current := abs; ; current = filepath.Dir(current) {
		candidate := filepath.Join(current, "node_modules")
		if info, err := os.Stat(candidate); err == nil && info.IsDir() {
			return candidate
		}
		if filepath.Dir(current) == current {
			return ""
		}
	}
}

// GetProgramDependencies reports the program's direct npm dependencies with their installed versions
// (shown by `pulumi about`).
func (h *languageHost) GetProgramDependencies(
	_ context.Context, req *pulumirpc.GetProgramDependenciesRequest,
) (*pulumirpc.GetProgramDependenciesResponse, error) {
	dir, _ := programLocation(req.GetInfo(), req.GetPwd(), req.GetProgram())
	project, err := readPackageJSON(filepath.Join(dir, "package.json"))
	if err != nil {
		return &pulumirpc.GetProgramDependenciesResponse{}, nil
	}
	modules := nearestNodeModules(dir)
	var names []string
	for name := range project.Dependencies {
		names = append(names, name)
	}
	for name := range project.DevDependencies {
		names = append(names, name)
	}
	sort.Strings(names)
	var deps []*pulumirpc.DependencyInfo
	for _, name := range names {
		version := project.Dependencies[name]
		if version == "" {
			version = project.DevDependencies[name]
		}
		if installed, err := readPackageJSON(filepath.Join(modules, name, "package.json")); err == nil {
			version = installed.Version
		}
		deps = append(deps, &pulumirpc.DependencyInfo{Name: name, Version: version})
	}
	return &pulumirpc.GetProgramDependenciesResponse{Dependencies: deps}, nil
}

// About names the node executable and its version (shown by `pulumi about`).
func (h *languageHost) About(context.Context, *pulumirpc.AboutRequest) (*pulumirpc.AboutResponse, error) {
	node, err := exec.LookPath("node")
	if err != nil {
		return nil, err
	}
	out, err := exec.Command(node, "--version").Output()
	if err != nil {
		return nil, err
	}
	return &pulumirpc.AboutResponse{Executable: node, Version: strings.TrimPrefix(strings.TrimSpace(string(out)), "v")}, nil
}

// RuntimeOptionsPrompts asks nothing extra during `pulumi new`.
func (h *languageHost) RuntimeOptionsPrompts(
	context.Context, *pulumirpc.RuntimeOptionsRequest,
) (*pulumirpc.RuntimeOptionsResponse, error) {
	return &pulumirpc.RuntimeOptionsResponse{}, nil
}
