"""`make run-cached`: uWSGI with its writer, and nginx (examples/nginx.conf) in front of it.

    python examples/run_cached.py --config var/config.ini --dir var/nginx \
        [--port 8443] [--http-port 8088] [--uwsgi-port 8081] [--direct-port 8080]

Writes, under --dir, an nginx configuration for the local paths and a throwaway self-signed
TLS pair (kept across runs), then starts uWSGI (examples/uwsgi.ini plus a uwsgi-protocol
socket for nginx) and nginx, both in the foreground: Ctrl-C stops both. Nothing under /etc
is read for configuration or written: nginx runs from --dir as the user who started it (as
root, its workers drop to nobody).

If uWSGI stops (killed, crashed), nginx goes on serving what it has cached, stale, and a
coded 503 for the rest; Enter starts uWSGI again.

The rendering functions are used by tests/test_nginx.py and tests/bench as well, so what
is tested is examples/nginx.conf itself, with only its ports, paths and certificate changed.
"""

import argparse
import fcntl
import http.client
import os
import select
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from wsgi.config import load_config  # noqa: E402
from writer.loop import LOCK_FILENAME  # noqa: E402

NGINX_CONF = REPO / "examples" / "nginx.conf"
UWSGI_INI = REPO / "examples" / "uwsgi.ini"
# Debian puts nginx in /usr/sbin, which is not on an ordinary user's PATH.
NGINX_PLACES = ("/usr/sbin/nginx",)
NGINX_INSTALL_HINT = "install Debian's nginx (apt-get install nginx-light, or nginx; .ci/run does it)"


def nginx_binary() -> str | None:
    return shutil.which("nginx") or next((p for p in NGINX_PLACES if os.access(p, os.X_OK)), None)


def site_config(*, directory: Path, https_port: int, http_port: int, uwsgi: str,
                certificate: Path, key: Path, template: str | None = None) -> str:
    """examples/nginx.conf with its deployment ports, paths and certificate replaced by
    local ones, and nothing else changed. Each replaced text must occur exactly once: a
    change to the example that this misses stops here, not in a confusing nginx error."""
    text = NGINX_CONF.read_text() if template is None else template
    for deployed, local in (
            ("uwsgi_cache_path /var/cache/nginx/fplane ", f"uwsgi_cache_path {directory / 'cache'} "),
            ("server 127.0.0.1:8081;", f"server {uwsgi};"),
            ("listen 443 ssl;", f"listen 127.0.0.1:{https_port} ssl;"),
            ("listen 80;", f"listen 127.0.0.1:{http_port};"),
            ("ssl_certificate     /etc/ssl/certs/fplane.example.org.pem;", f"ssl_certificate     {certificate};"),
            ("ssl_certificate_key /etc/ssl/private/fplane.example.org.key;", f"ssl_certificate_key {key};")):
        if text.count(deployed) != 1:
            raise ValueError(f"examples/nginx.conf: expected {deployed!r} exactly once")
        text = text.replace(deployed, local)
    return text


def main_config(directory: Path, *, error_log: str, extra_http: str = "", workers: int = 1) -> str:
    """The nginx.conf that `nginx -p DIR -c DIR/nginx.conf` reads: pid, logs and temporary
    files in DIR, and the site (fplane.conf) included in its http block."""
    temp = directory / "tmp"
    user = "user nobody nogroup;\n" if os.geteuid() == 0 else ""
    return f"""\
# Written by examples/run_cached.py for a local, unprivileged nginx; the site is fplane.conf.
{user}worker_processes {workers};
daemon off;
pid {directory / 'nginx.pid'};
error_log {error_log} notice;
events {{
    worker_connections 1024;
}}
http {{
    # what Debian's /etc/nginx/nginx.conf sets around the files it includes
    sendfile on;
    tcp_nopush on;
    access_log {directory / 'access.log'};
    client_body_temp_path {temp / 'body'};
    uwsgi_temp_path {temp / 'uwsgi'};
    proxy_temp_path {temp / 'proxy'};
    fastcgi_temp_path {temp / 'fastcgi'};
    scgi_temp_path {temp / 'scgi'};
    include {directory / 'fplane.conf'};
{extra_http}}}
"""


def self_signed_pair(directory: Path) -> tuple[Path, Path]:
    """A throwaway certificate for localhost and 127.0.0.1, valid 30 days: made again when
    missing or older than 20 days, so a run never starts with one about to expire."""
    certificate, key = directory / "localhost.pem", directory / "localhost.key"
    fresh = certificate.exists() and key.exists() and time.time() - certificate.stat().st_mtime < 20 * 86400
    if not fresh:
        subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "30",
                        "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1",
                        "-keyout", str(key), "-out", str(certificate)],
                       check=True, capture_output=True)
    return certificate, key


def write_configs(directory: Path, *, https_port: int, http_port: int, uwsgi: str,
                  certificate: Path, key: Path, error_log: str | None = None,
                  extra_http: str = "", workers: int = 1) -> Path:
    """Both files under ``directory`` (which nginx's workers must be able to traverse);
    returns the path to give nginx with -c."""
    (directory / "tmp").mkdir(parents=True, exist_ok=True)
    (directory / "fplane.conf").write_text(site_config(
        directory=directory, https_port=https_port, http_port=http_port, uwsgi=uwsgi,
        certificate=certificate, key=key))
    main = directory / "nginx.conf"
    main.write_text(main_config(directory, error_log=error_log or str(directory / "error.log"),
                                extra_http=extra_http, workers=workers))
    return main


def nginx_command(nginx: str, main: Path) -> list[str]:
    return [nginx, "-p", str(main.parent), "-c", str(main), "-e", "stderr"]


def uwsgi_command(uwsgi: str, socket: str) -> list[str]:
    """examples/uwsgi.ini as `make run` starts it, plus the socket nginx talks to."""
    return [uwsgi, "--ini", str(UWSGI_INI), "--socket", socket]


def uwsgi_env(config: Path, direct_port: int) -> dict:
    """The environment `make run` gives uWSGI, less UWSGI_* variables: uWSGI would read each
    as an option (examples/uwsgi.ini is strict: an unknown one stops it)."""
    bin_dir = str(Path(sys.executable).parent)
    inherited = {k: v for k, v in os.environ.items() if not k.startswith("UWSGI_")}
    return {**inherited, "FPLANE_CONFIG": str(config.resolve()), "FPLANE_PORT": str(direct_port),
            "PATH": bin_dir + os.pathsep + os.environ.get("PATH", "")}


def stop_orphaned_writer(data_dir: Path) -> None:
    """SIGTERM the writer that a killed uWSGI left running (uWSGI stops its attached daemon
    only when it stops itself). It still holds the data directory's lock, its pid written
    in it; a free lock means no writer runs. SIGTERM: it finishes the update in hand."""
    try:
        fd = os.open(data_dir / LOCK_FILENAME, os.O_RDWR)
    except FileNotFoundError:
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return
    except BlockingIOError:
        holder = os.read(fd, 32).decode("ascii", "replace").strip()
    finally:
        os.close(fd)
    if holder.isdigit():
        try:
            os.kill(int(holder), signal.SIGTERM)
        except ProcessLookupError:
            pass


def _stop(process: subprocess.Popen | None) -> None:
    if process is not None and process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", required=True, type=Path, help="the service's config.ini")
    parser.add_argument("--dir", required=True, type=Path, help="where nginx's files go")
    parser.add_argument("--port", type=int, default=8443, help="nginx, HTTPS (default 8443)")
    parser.add_argument("--http-port", type=int, default=8088, help="nginx, plain HTTP for reads (default 8088)")
    parser.add_argument("--uwsgi-port", type=int, default=8081, help="uWSGI's uwsgi-protocol socket (default 8081)")
    parser.add_argument("--direct-port", type=int, default=8080, help="uWSGI's own HTTP router (default 8080)")
    args = parser.parse_args(argv)

    nginx = nginx_binary()
    if nginx is None:
        print(f"run_cached: nginx is missing: {NGINX_INSTALL_HINT}", file=sys.stderr)
        return 2
    uwsgi = str(Path(sys.executable).parent / "uwsgi")
    data_dir = load_config(args.config).data_dir
    directory = args.dir.resolve()
    directory.mkdir(parents=True, exist_ok=True)
    certificate, key = self_signed_pair(directory)
    main_conf = write_configs(directory, https_port=args.port, http_port=args.http_port,
                              uwsgi=f"127.0.0.1:{args.uwsgi_port}", certificate=certificate, key=key,
                              error_log="stderr")
    checked = subprocess.run([*nginx_command(nginx, main_conf), "-t", "-q"])
    if checked.returncode != 0:
        return 1

    https, http = f"https://127.0.0.1:{args.port}", f"http://127.0.0.1:{args.http_port}"
    print(f"""
fplaneserver behind nginx's cache: {https}/  (TLS, self-signed: {certificate})
  reads also over plain HTTP: {http}/   uWSGI direct, no cache: http://127.0.0.1:{args.direct_port}/
try:  curl -sI --cacert {certificate} '{https}/fplane/20180715' | grep -i -e x-cache-status -e cache-control
      (MISS the first time, HIT after; kill uWSGI and it says STALE once the copy expires)
post over TLS: python examples/demo.py status | .venv/bin/update_fplane --station demo-tcs \\
        --password-file var/demo-tcs.password --cacert {certificate} --url {https} -
Ctrl-C stops nginx and uWSGI.
""", flush=True)

    def start_uwsgi() -> subprocess.Popen:
        return subprocess.Popen(uwsgi_command(uwsgi, f"127.0.0.1:{args.uwsgi_port}"), cwd=REPO,
                                env=uwsgi_env(args.config, args.direct_port))

    # Ctrl-C stops everything even when started from a shell that ignores SIGINT for its
    # background jobs (Python then leaves it ignored); SIGTERM stops it the same way.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt))
    web = front = None
    try:
        web = start_uwsgi()
        # A uWSGI that cannot start (a bad config.ini, a port in use) stops everything here;
        # only a uWSGI that dies later leaves nginx serving its cache.
        if not _answers(f"http://127.0.0.1:{args.direct_port}/?format=txt", web):
            print(f"run_cached: uWSGI did not start (status {web.poll()}); see its lines above",
                  file=sys.stderr)
            return 1
        front = subprocess.Popen(nginx_command(nginx, main_conf))
        announced = False
        while True:
            if front.poll() is not None:
                print(f"run_cached: nginx exited with status {front.returncode}", file=sys.stderr)
                return 1
            if web.poll() is not None and not announced:
                stop_orphaned_writer(data_dir)
                print(f"\nrun_cached: uWSGI exited with status {web.returncode}. nginx goes on serving "
                      "cached answers (X-Cache-Status: STALE once expired) and a coded 503 (401) "
                      "for the rest. Enter starts uWSGI again; Ctrl-C stops nginx too.", flush=True)
                announced = True
            if announced and _enter_pressed(1.0):
                web, announced = start_uwsgi(), False
            elif not announced:
                time.sleep(0.5)
    except KeyboardInterrupt:
        return 0
    finally:
        _stop(web)
        _stop(front)
        stop_orphaned_writer(data_dir)


def _answers(url: str, process: subprocess.Popen, seconds: float = 60) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and process.poll() is None:
        try:
            with urllib.request.urlopen(url, timeout=5):
                return True
        except (OSError, http.client.HTTPException):
            time.sleep(0.2)
    return False


def _enter_pressed(timeout: float) -> bool:
    if not sys.stdin or not sys.stdin.isatty():
        time.sleep(timeout)
        return False
    ready, _, _ = select.select([sys.stdin], [], [], timeout)
    return bool(ready) and sys.stdin.readline() is not None


if __name__ == "__main__":
    sys.exit(main())
