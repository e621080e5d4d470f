# asyncguard: the image of the GitHub Action (`asyncguard review`, the default command) and of the
# webhook server (`docker run -p 8000:8000 IMAGE serve`).

# Build stage: turn the source into a wheel. hatchling (the build backend) is fetched into pip's
# isolated build environment here and never reaches the final image.
FROM python:3.12-slim-bookworm AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY bot/ bot/
COPY rules/ rules/
RUN python -m pip wheel --no-cache-dir --no-deps --wheel-dir /dist .

# Final stage: the slim runtime, git and the wheel with its runtime dependencies (no dev extras).
FROM python:3.12-slim-bookworm

# ASYNCGUARD_HOST: in a container the server must listen on every interface to be reachable.
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    ASYNCGUARD_HOST=0.0.0.0 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore

# git: the review reads the checkout (diff, merge-base, the base branch's config) with git.
# safe.directory '*': the workspace is mounted from the host and owned by another uid, which git
# otherwise refuses to read ("detected dubious ownership").
# The user has UID 1001, the uid of the runner user on GitHub-hosted runners: the checkout in the
# mounted workspace and the runner's file-command files ($GITHUB_OUTPUT, $GITHUB_STEP_SUMMARY)
# belong to that uid and are not writable by others, so the same uid keeps them writable without
# running as root.
RUN apt-get update \
    && apt-get install -y --no-install-recommends git \
    && rm -rf /var/lib/apt/lists/* \
    && git config --system --add safe.directory '*' \
    && groupadd --gid 1001 asyncguard \
    && useradd --uid 1001 --gid 1001 --no-log-init --create-home --shell /usr/sbin/nologin asyncguard

COPY --from=build /dist/ /tmp/dist/
RUN python -m pip install --no-cache-dir /tmp/dist/*.whl \
    && rm -rf /tmp/dist

USER 1001:1001
# For `serve` only: as an Action, the runner mounts the workspace and makes it the working directory.
WORKDIR /home/asyncguard

# The webhook server (`serve`) listens on 8000; the Action does not use the port.
EXPOSE 8000

ENTRYPOINT ["asyncguard"]
CMD ["review"]
