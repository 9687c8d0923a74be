# Verdict's container image: `verdict serve` and the rest of the command line, as a non-root user.
#   docker build -t verdict:0.1.0 .
# The Helm chart (charts/verdict) runs this image by default: its user (10001), port (8080) and
# entrypoint (`verdict`) are the chart's, and a test keeps the two in agreement.

# --- build: install the project and its runtime dependencies into a virtual environment
FROM python:3.11-slim-bookworm AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1
RUN python -m venv /opt/verdict
WORKDIR /src
COPY pyproject.toml README.md ./
COPY analyzer/ analyzer/
COPY metrics/ metrics/
COPY strategies/ strategies/
# then drop what never runs in the container: pip itself and the libraries' own test suites
# (454 -> 379 MB of virtual environment; the byte-code stays, the root filesystem is read-only)
RUN /opt/verdict/bin/pip install --no-cache-dir '.[postgres]' \
    && /opt/verdict/bin/pip uninstall --yes pip setuptools \
    && find /opt/verdict -depth -type d -name tests -path '*/site-packages/*' -exec rm -rf {} +

# --- runtime: the virtual environment only, no compilers, no pip cache, no sources
FROM python:3.11-slim-bookworm
LABEL org.opencontainers.image.title="verdict" \
      org.opencontainers.image.description="Progressive delivery analysis engine: always-valid canary verdicts from Prometheus" \
      org.opencontainers.image.version="0.1.0" \
      org.opencontainers.image.licenses="Apache-2.0"
RUN groupadd --system --gid 10001 verdict \
    && useradd --system --uid 10001 --gid 10001 --home-dir /var/lib/verdict \
       --no-create-home --shell /usr/sbin/nologin verdict \
    && mkdir -p /var/lib/verdict /etc/verdict \
    && chown 10001:10001 /var/lib/verdict
COPY --from=build /opt/verdict /opt/verdict
ENV PATH=/opt/verdict/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
WORKDIR /var/lib/verdict
USER 10001:10001
EXPOSE 8080
ENTRYPOINT ["verdict"]
CMD ["--help"]
