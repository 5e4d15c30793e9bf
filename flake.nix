{
  description = "LiteObs: HTTP exchanges on Linux nodes and Kubernetes, attributed to processes (agent, server, client)";

  inputs = {
    nixpkgs.url = "github:NixOS/nixpkgs/nixos-25.05";
    # The workspace needs Rust 1.95 (Cargo.toml rust-version); nixos-25.05 ships 1.86.
    rust-overlay = {
      url = "github:oxalica/rust-overlay";
      inputs.nixpkgs.follows = "nixpkgs";
    };
  };

  outputs = { self, nixpkgs, rust-overlay }:
    let
      lib = nixpkgs.lib;
      # Linux only: live capture (libpcap) and eBPF attribution.
      systems = [ "x86_64-linux" "aarch64-linux" ];
      workspace = (builtins.fromTOML (builtins.readFile ./Cargo.toml)).workspace.package;
      forAllSystems = f: lib.genAttrs systems (system: f (import nixpkgs {
        inherit system;
        overlays = [ rust-overlay.overlays.default ];
      }));
      # The workspace's rust-version (1.95 → 1.95.0): `minimal` to build, `default` (clippy,
      # rustfmt) for the dev shell and the checks.
      rustFor = pkgs: pkgs.rust-bin.stable."${workspace.rust-version}.0";
      toolchainFor = pkgs: (rustFor pkgs).default;

      packagesFor = pkgs:
        let
          toolchain = (rustFor pkgs).minimal;
          rustPlatform = pkgs.makeRustPlatform { cargo = toolchain; rustc = toolchain; };
          # One derivation per program, each building one package of the workspace (release
          # profile, like every LiteObs build). The server's bundled DuckDB compiles its C++ here
          # (~20 minutes on 2 cores).
          program = pname: description: rustPlatform.buildRustPackage {
            inherit pname;
            inherit (workspace) version;
            src = lib.fileset.toSource {
              root = ./.;
              fileset = lib.fileset.unions [
                ./Cargo.toml
                ./Cargo.lock
                ./crates
                ./ebpf
                ./integration
              ];
            };
            cargoLock.lockFile = ./Cargo.lock;
            cargoBuildFlags = [ "--package" pname ];
            nativeBuildInputs = [ pkgs.pkg-config ];
            buildInputs = [ pkgs.libpcap ];
            # The tests need root, network namespaces, Docker or tshark; scripts/test.sh runs them.
            doCheck = false;
            meta = {
              inherit description;
              license = lib.licenses.asl20;
              platforms = lib.platforms.linux;
              mainProgram = pname;
            };
          };
        in
        rec {
          agent = program "liteobs-agent" "Node agent: captures HTTP/1.x with libpcap, attributes it with eBPF";
          server = program "liteobs-server" "REST server storing exchanges in DuckDB or SQLite";
          client = program "liteobs-client" "Command-line queries against liteobs-server";
          default = pkgs.symlinkJoin {
            name = "liteobs-${workspace.version}";
            paths = [ agent server client ];
          };
        };
    in
    {
      packages = forAllSystems packagesFor;

      devShells = forAllSystems (pkgs: {
        default = pkgs.mkShell {
          packages = [
            (toolchainFor pkgs)
            pkgs.pkg-config
            pkgs.libpcap
            pkgs.just
            pkgs.python3
            pkgs.curl
          ];
        };
      });

      checks = forAllSystems (pkgs:
        let built = packagesFor pkgs; in {
          inherit (built) agent server client;
          # rustfmt straight on the sources: `cargo fmt` would want the crates' sources too.
          fmt = pkgs.runCommand "liteobs-fmt" { nativeBuildInputs = [ (toolchainFor pkgs) ]; } ''
            cd ${self}
            find crates ebpf integration deploy/check -name '*.rs' -print0 \
              | xargs -0 rustfmt --edition 2024 --check --config-path rustfmt.toml
            touch $out
          '';
        });

      formatter = forAllSystems (pkgs: pkgs.nixpkgs-fmt);
    };
}
