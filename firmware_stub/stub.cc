// stub.cc - the device program: load a bundle's controller for one target, then
//   serve  : answer observation frames with action frames (stdin/stdout, TCP, or a serial device)
//   bench  : time N inferences and print one JSON object
//   info   : print what was loaded, as JSON
// Usage: pae_stub serve|bench|info --bundle DIR --target NAME [options]  (see usage() below)
// With --public-key FILE the bundle must be signed with its private key (SIGNING.md): manifest.sig is
// checked against manifest.json's bytes (Monocypher's ed25519) before anything else is read or loaded.
#include <arpa/inet.h>
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <link.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "frame.h"
#include "frame_handler.h"
#include "json_lookup.h"
#include "model.h"
#include "monocypher-ed25519.h"
#include "sha256.h"

namespace {

enum Exit { kOk = 0, kUsage = 2, kBundle = 3, kLoad = 4, kIo = 5, kSignature = 6 };
constexpr int kMaxObsFloats = 16384;  // largest observation: a multi-part request of up to 256 frames

struct Config {
    std::string mode, bundle, target, listen, serial, obs_file, plan, public_key;
    long deadline_us = 0;       // 0: no deadline
    long stall_us = 0;          // test hook: extra time inside every inference (deadline tests)
    long frame_timeout_ms = 200;  // a frame whose bytes stop for this long is truncated
    long n = 1000, warmup = 50;
    unsigned long seed = 0;
    std::vector<float> safe_action;  // empty: zeros
};

struct Loaded {
    int obs_dim = 0, act_dim = 0;
    std::string lib_path, sha256;
    size_t lib_bytes = 0, model_bytes = 0;
};

[[noreturn]] void die(int code, const char* fmt, const char* a = "", const char* b = "", const char* c = "") {
    std::fprintf(stderr, "pae_stub: error: ");
    std::fprintf(stderr, fmt, a, b, c);
    std::fprintf(stderr, "\n");
    std::exit(code);
}

void usage() {
    std::fprintf(stderr,
                 "usage: pae_stub serve|bench|info --bundle DIR --target NAME [--plan FILE] [--public-key FILE] [options]\n"
                 "  serve: [--listen HOST:PORT | --serial PATH] (default stdin/stdout)\n"
                 "         [--deadline-us N] [--safe-action v1,v2,...] [--frame-timeout-ms N] [--stall-us N]\n"
                 "  bench: [--n N] [--warmup N] [--seed S] [--obs FILE (float32 rows)] [--stall-us N]\n");
    std::exit(kUsage);
}

long to_long(const char* flag, const char* v) {
    char* end;
    errno = 0;
    long x = std::strtol(v, &end, 10);
    if (errno || *end || x < 0) die(kUsage, "%s expects an integer >= 0, got '%s'", flag, v);
    return x;
}

Config parse_args(int argc, char** argv) {
    if (argc < 2) usage();
    Config c;
    c.mode = argv[1];
    if (c.mode != "serve" && c.mode != "bench" && c.mode != "info") usage();
    for (int i = 2; i < argc; i++) {
        std::string f = argv[i];
        if (i + 1 >= argc) die(kUsage, "%s needs a value", argv[i]);
        const char* v = argv[++i];
        if (f == "--bundle") c.bundle = v;
        else if (f == "--target") c.target = v;
        else if (f == "--listen") c.listen = v;
        else if (f == "--serial") c.serial = v;
        else if (f == "--obs") c.obs_file = v;
        else if (f == "--plan") c.plan = v;
        else if (f == "--public-key") c.public_key = v;
        else if (f == "--deadline-us") c.deadline_us = to_long(argv[i - 1], v);
        else if (f == "--stall-us") c.stall_us = to_long(argv[i - 1], v);
        else if (f == "--frame-timeout-ms") c.frame_timeout_ms = to_long(argv[i - 1], v);
        else if (f == "--n") c.n = to_long(argv[i - 1], v);
        else if (f == "--warmup") c.warmup = to_long(argv[i - 1], v);
        else if (f == "--seed") c.seed = (unsigned long)to_long(argv[i - 1], v);
        else if (f == "--safe-action") {
            std::string s = v;
            size_t pos = 0;
            while (pos <= s.size()) {
                size_t comma = s.find(',', pos);
                std::string tok = s.substr(pos, comma == std::string::npos ? std::string::npos : comma - pos);
                char* end;
                float x = std::strtof(tok.c_str(), &end);
                if (tok.empty() || *end || !std::isfinite(x)) die(kUsage, "--safe-action: '%s' is not a finite number", tok.c_str());
                c.safe_action.push_back(x);
                if (comma == std::string::npos) break;
                pos = comma + 1;
            }
        } else die(kUsage, "unknown option %s", f.c_str());
    }
    if (c.bundle.empty() || c.target.empty()) die(kUsage, "--bundle and --target are required");
    if (c.n < 1) die(kUsage, "--n must be >= 1");
    return c;
}

bool read_file(const std::string& path, std::vector<uint8_t>& out) {
    FILE* f = std::fopen(path.c_str(), "rb");
    if (!f) return false;
    uint8_t chunk[65536];
    size_t got;
    while ((got = std::fread(chunk, 1, sizeof chunk, f)) > 0) out.insert(out.end(), chunk, chunk + got);
    bool ok = !std::ferror(f);
    std::fclose(f);
    return ok;
}

int hex_digit(char ch) {
    if (ch >= '0' && ch <= '9') return ch - '0';
    if (ch >= 'a' && ch <= 'f') return ch - 'a' + 10;
    if (ch >= 'A' && ch <= 'F') return ch - 'A' + 10;
    return -1;
}

// The public key file: 64 hex digits (the 32-byte ed25519 key), surrounding whitespace ignored.
void read_public_key(const std::string& path, uint8_t key[32]) {
    std::vector<uint8_t> raw;
    if (!read_file(path, raw)) die(kUsage, "--public-key %s: cannot read (%s)", path.c_str(), std::strerror(errno));
    std::string text(raw.begin(), raw.end());
    size_t a = text.find_first_not_of(" \t\r\n"), b = text.find_last_not_of(" \t\r\n");
    text = a == std::string::npos ? "" : text.substr(a, b - a + 1);
    if (text.size() != 64) die(kUsage, "--public-key %s: not a public key file (64 hex digits expected)", path.c_str());
    for (int i = 0; i < 32; i++) {
        int hi = hex_digit(text[2 * i]), lo = hex_digit(text[2 * i + 1]);
        if (hi < 0 || lo < 0) die(kUsage, "--public-key %s: not a public key file (64 hex digits expected)", path.c_str());
        key[i] = static_cast<uint8_t>(hi * 16 + lo);
    }
}

// The signature check of a signed bundle: manifest.sig must be the ed25519 signature (by the private
// half of key) of the manifest's exact bytes. Nothing of the manifest is used before this passes.
void check_signature(const Config& c, const std::vector<uint8_t>& manifest) {
    uint8_t key[32];
    read_public_key(c.public_key, key);
    std::string spath = c.bundle + "/manifest.sig";
    std::vector<uint8_t> sig;
    if (!read_file(spath, sig))
        die(kSignature, "%s: unsigned bundle (cannot read %s): --public-key accepts only signed bundles",
            c.bundle.c_str(), spath.c_str());
    if (sig.size() != 64) {
        std::string got = std::to_string(sig.size());
        die(kSignature, "%s: %s bytes, an ed25519 signature has 64: refusing the bundle", spath.c_str(), got.c_str());
    }
    if (crypto_ed25519_check(sig.data(), key, manifest.data(), manifest.size()) != 0)
        die(kSignature, "%s: signature does not match manifest.json for the public key %s (wrong key, or the "
            "manifest was changed): refusing the bundle", spath.c_str(), c.public_key.c_str());
}

// Verify a file's bytes against the digest the manifest gives at path[0..depth) (signed bundles: the plan).
void check_listed_file(const char* text, size_t n, const char* const* path, int depth, const std::string& what,
                       const std::vector<uint8_t>& data, const std::string& mpath) {
    char sha[80];
    if (pae_json_get_string(text, n, path, depth, sha, sizeof sha) || std::strlen(sha) != 64)
        die(kSignature, "%s: no artifacts[\"%s\"].plan.sha256: a signed bundle must list the kernel plan %s",
            mpath.c_str(), path[1], what.c_str());
    char hex[65];
    pae_sha256_hex(data.data(), data.size(), hex);
    for (char* q = sha; *q; q++) *q = static_cast<char>(std::tolower(*q));
    if (std::strcmp(hex, sha) != 0)
        die(kBundle, "%s: sha256 %s does not match the manifest's %s: refusing to load", what.c_str(), hex, sha);
}

// Write bytes to a fresh file (mode 0500) in the private directory dir; returns its path.
std::string private_copy(const std::string& dir, const char* name, const std::vector<uint8_t>& data) {
    std::string copy = dir + "/" + name;
    int fd = open(copy.c_str(), O_WRONLY | O_CREAT | O_EXCL, 0500);
    if (fd < 0 || write(fd, data.data(), data.size()) != static_cast<ssize_t>(data.size()) || close(fd) != 0)
        die(kLoad, "cannot write the verified copy %s", copy.c_str());
    return copy;
}

// The CPU flags this machine has (/proc/cpuinfo "flags", or "Features" on ARM), space-separated with a
// space at each end so that " avx2 " can be searched for; empty when unreadable.
std::string host_cpu_flags() {
    std::vector<uint8_t> raw;
    if (!read_file("/proc/cpuinfo", raw)) return "";
    std::string text(raw.begin(), raw.end());
    for (const char* key : {"\nflags", "\nFeatures"}) {
        size_t at = ("\n" + text).find(key);
        if (at == std::string::npos) continue;
        size_t colon = text.find(':', at), end = text.find('\n', at);
        if (colon == std::string::npos || colon > end) continue;
        return " " + text.substr(colon + 1, end - colon - 1) + " ";
    }
    return "";
}

// A library built for a CPU (compile_flags.cpu, e.g. znver5 with AVX-512 and FMA) executes an illegal
// instruction on a CPU without its flags: refuse it before loading, naming what is missing.
void check_cpu_flags(const char* text, size_t n, const Config& c, const std::string& mpath) {
    char need[1024], cpu[128] = "?";
    const char* pflags[] = {"artifacts", c.target.c_str(), "compile_flags", "cpu_flags"};
    const char* pcpu[] = {"artifacts", c.target.c_str(), "compile_flags", "cpu"};
    if (pae_json_get_string(text, n, pflags, 4, need, sizeof need) || !need[0]) return;  // no requirement recorded
    pae_json_get_string(text, n, pcpu, 4, cpu, sizeof cpu);
    std::string have = host_cpu_flags(), missing;
    if (have.empty()) return;  // no /proc/cpuinfo (a board without procfs): nothing to check against
    std::string list = need;
    size_t pos = 0;
    while (pos < list.size()) {
        size_t sp = list.find(' ', pos);
        std::string flag = list.substr(pos, sp == std::string::npos ? std::string::npos : sp - pos);
        if (!flag.empty() && have.find(" " + flag + " ") == std::string::npos) missing += (missing.empty() ? "" : " ") + flag;
        if (sp == std::string::npos) break;
        pos = sp + 1;
    }
    if (!missing.empty()) {
        std::string what = mpath + ": the library for target " + c.target + " was built for CPU " + cpu;
        die(kLoad, "%s; this CPU lacks its flags: %s (export for this machine: target x86_64 run here, or name its "
            "CPU: x86_64-avx2, x86_64-sse2, a target entry with its mcpu)", what.c_str(), missing.c_str());
    }
}

// Read the manifest (with --public-key: check its signature first), verify the target's library (and
// plan) against their sha256, load them from private copies.
Loaded load_bundle(const Config& c) {
    Loaded L;
    std::string mpath = c.bundle + "/manifest.json";
    std::vector<uint8_t> mbytes;
    if (!read_file(mpath, mbytes)) die(kBundle, "%s: cannot read (%s)", mpath.c_str(), std::strerror(errno));
    if (!c.public_key.empty()) check_signature(c, mbytes);
    const char* text = reinterpret_cast<const char*>(mbytes.data());
    size_t n = mbytes.size();
    if (!pae_json_valid(text, n)) die(kBundle, "%s: not valid JSON", mpath.c_str());
    char file[256], sha[80];
    const char* pfile[] = {"artifacts", c.target.c_str(), "file"};
    const char* psha[] = {"artifacts", c.target.c_str(), "sha256"};
    const char* pbytes[] = {"artifacts", c.target.c_str(), "bytes"};
    if (pae_json_get_string(text, n, pfile, 3, file, sizeof file))
        die(kBundle, "%s: no artifacts[\"%s\"].file: the bundle was not built for target %s", mpath.c_str(), c.target.c_str(), c.target.c_str());
    if (pae_json_get_string(text, n, psha, 3, sha, sizeof sha) || std::strlen(sha) != 64)
        die(kBundle, "%s: artifacts[\"%s\"].sha256 is missing or not 64 hex digits", mpath.c_str(), c.target.c_str());
    if (std::strchr(file, '/') || std::strcmp(file, "..") == 0 || std::strcmp(file, ".") == 0)
        die(kBundle, "%s: artifacts[\"%s\"].file '%s' must be a file name inside the bundle", mpath.c_str(), c.target.c_str(), file);
    // The controller spec: "spec" at the top (export/bundle.py), else the first obs_dim/act_dim found.
    const char* pobs[] = {"spec", "obs_dim"};
    const char* pact[] = {"spec", "act_dim"};
    double d;
    if (pae_json_get_number(text, n, pobs, 2, &d) && pae_json_find_number(text, n, "obs_dim", &d)) d = 0;
    if (d < 1 || d > kMaxObsFloats || d != std::floor(d))  // above 64 floats: multi-part requests
        die(kBundle, "%s: obs_dim missing or not an integer in 1..%s", mpath.c_str(), std::to_string(kMaxObsFloats).c_str());
    L.obs_dim = static_cast<int>(d);
    if (pae_json_get_number(text, n, pact, 2, &d) && pae_json_find_number(text, n, "act_dim", &d)) d = 0;
    if (d < 1 || d > PAE_MAX_FLOATS || d != std::floor(d))
        die(kBundle, "%s: act_dim missing or not an integer in 1..64", mpath.c_str());
    L.act_dim = static_cast<int>(d);

    check_cpu_flags(text, n, c, mpath);

    L.lib_path = c.bundle + "/" + file;
    std::vector<uint8_t> lib;
    if (!read_file(L.lib_path, lib)) die(kBundle, "%s: cannot read (%s)", L.lib_path.c_str(), std::strerror(errno));
    double want_bytes;
    if (!pae_json_get_number(text, n, pbytes, 3, &want_bytes) && want_bytes != static_cast<double>(lib.size())) {
        std::string got = std::to_string(lib.size()), want = std::to_string(static_cast<long long>(want_bytes));
        die(kBundle, "%s: %s bytes, the manifest says %s: refusing to load", L.lib_path.c_str(), got.c_str(), want.c_str());
    }
    char hex[65];
    pae_sha256_hex(lib.data(), lib.size(), hex);
    for (char* q = sha; *q; q++) *q = static_cast<char>(std::tolower(*q));
    if (std::strcmp(hex, sha) != 0)
        die(kBundle, "%s: sha256 %s does not match the manifest's %s: refusing to load", L.lib_path.c_str(), hex, sha);
    L.sha256 = hex;
    L.model_bytes = lib.size();
    std::vector<uint8_t> plan;  // signed bundles: the plan too is checked, then loaded from a private copy
    bool plan_checked = !c.public_key.empty() && !c.plan.empty();
    if (plan_checked) {
        if (!read_file(c.plan, plan)) die(kBundle, "%s: cannot read (%s)", c.plan.c_str(), std::strerror(errno));
        const char* pplan[] = {"artifacts", c.target.c_str(), "plan", "sha256"};
        check_listed_file(text, n, pplan, 4, c.plan, plan, mpath);
    }

    // Load the bytes that were hashed, not the path again: a private copy closes the window in
    // which the file could be swapped between the check and dlopen.
    const char* tmpdir = std::getenv("TMPDIR");
    std::string dir = std::string(tmpdir && *tmpdir ? tmpdir : "/tmp") + "/pae_stub.XXXXXX";
    std::vector<char> dbuf(dir.begin(), dir.end());
    dbuf.push_back(0);
    if (!mkdtemp(dbuf.data())) die(kLoad, "cannot create a private directory under %s (%s)", dir.c_str(), std::strerror(errno));
    std::string copy = private_copy(dbuf.data(), "model.so", lib);
    std::string plan_path = c.plan;
    if (plan_checked) plan_path = private_copy(dbuf.data(), "plan.bin", plan);
    char err[1024];
    int rc = pae_model_load(copy.c_str(), plan_path.empty() ? nullptr : plan_path.c_str(), hex, L.obs_dim, L.act_dim,
                            err, sizeof err);
    unlink(copy.c_str());
    if (plan_checked) unlink(plan_path.c_str());
    rmdir(dbuf.data());
    if (rc) die(kLoad, "%s: cannot load: %s", L.lib_path.c_str(), err);
    return L;
}

double now_us() {
    timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e6 + ts.tv_nsec / 1e3;
}

void stall(long us) {
    if (us <= 0) return;
    double until = now_us() + static_cast<double>(us);
    while (now_us() < until) {
    }
}

// --- serve -----------------------------------------------------------------------------------

struct Server {
    const Config& cfg;
    const Loaded& L;
    int fd_in, fd_out;
    std::vector<float> safe;
    pae_handler h;        // the replies to every frame (frame_handler.h), shared with the firmware
    std::vector<float> request;  // obs_dim floats: the parts of a multi-part request
    bool broken = false;  // the peer went away

    static void write_frame(void* ctx, const uint8_t* out, size_t len) {
        Server& s = *static_cast<Server*>(ctx);
        size_t off = 0;
        while (off < len && !s.broken) {
            ssize_t w = write(s.fd_out, out + off, len - off);
            if (w < 0 && errno == EINTR) continue;
            if (w < 0 && errno == EAGAIN) {
                pollfd p{s.fd_out, POLLOUT, 0};
                poll(&p, 1, 100);
                continue;
            }
            if (w <= 0) s.broken = true;
            else off += static_cast<size_t>(w);
        }
    }

    static int infer(void* ctx, uint32_t seq, const float* obs, float* act, uint32_t* aux_ns, int* late) {
        const Server& s = *static_cast<Server*>(ctx);
        char err[512];
        double t0 = now_us();
        int rc = pae_model_infer(obs, act, err, sizeof err);
        stall(s.cfg.stall_us);
        double dt = now_us() - t0;
        *aux_ns = static_cast<uint32_t>(std::min(dt * 1e3, 4.0e9));
        if (rc) {
            std::fprintf(stderr, "pae_stub: seq %u: %s\n", seq, err);
            return rc;
        }
        *late = s.cfg.deadline_us > 0 && dt > static_cast<double>(s.cfg.deadline_us);
        return 0;
    }

    void drain() {
        pae_frame f;
        for (;;) {
            int r = pae_parser_next(&h.parser, &f);
            if (r == PAE_NEED_MORE || broken) return;
            pae_handler_take(&h, r, &f);
        }
    }

    int run() {
        const pae_device dev = {this, infer, write_frame, nullptr};
        pae_handler_init(&h, &dev, L.obs_dim, L.act_dim, safe.data());
        request.assign(static_cast<size_t>(L.obs_dim), 0.0f);  // where multi-part requests are reassembled
        pae_handler_set_request_buffer(&h, request.data(), request.size());
        for (;;) {
            int timeout = pae_parser_pending(&h.parser) ? static_cast<int>(cfg.frame_timeout_ms) : -1;
            pollfd p{fd_in, POLLIN, 0};
            int pr = poll(&p, 1, timeout);
            if (pr < 0 && errno == EINTR) continue;
            if (pr < 0) return kIo;
            if (pr == 0) {  // bytes of a frame stopped coming: answer it, do not wait forever
                pae_frame f;
                if (pae_parser_truncate(&h.parser, &f) == PAE_E_TRUNCATED) pae_handler_take(&h, PAE_E_TRUNCATED, &f);
                drain();
                continue;
            }
            uint8_t chunk[PAE_MAX_FRAME];
            size_t room = std::min(sizeof chunk, pae_parser_space(&h.parser));
            ssize_t got = read(fd_in, chunk, room);
            if (got < 0 && (errno == EINTR || errno == EAGAIN)) continue;
            if (got <= 0) {  // end of stream (or the line dropped): report a cut frame, then stop
                pae_frame f;
                while (pae_parser_pending(&h.parser) && !broken) {
                    if (pae_parser_truncate(&h.parser, &f) == PAE_E_TRUNCATED) pae_handler_take(&h, PAE_E_TRUNCATED, &f);
                    drain();
                }
                return got < 0 || broken ? kIo : kOk;
            }
            pae_parser_write(&h.parser, chunk, static_cast<size_t>(got));
            drain();
            if (broken) {  // a reply could not be written: the host is gone (PROTOCOL.md: exit 5)
                std::fprintf(stderr, "pae_stub: error: the output closed (%s): stopping\n", std::strerror(errno));
                return kIo;
            }
        }
    }
};

int open_serial(const std::string& path) {
    int fd = open(path.c_str(), O_RDWR | O_NOCTTY);
    if (fd < 0) die(kIo, "%s: cannot open (%s)", path.c_str(), std::strerror(errno));
    termios t;
    if (tcgetattr(fd, &t) == 0) {  // raw bytes: no echo, no line editing, no CR/LF translation
        cfmakeraw(&t);
        cfsetispeed(&t, B115200);
        cfsetospeed(&t, B115200);
        t.c_cflag |= CLOCAL | CREAD;
        tcsetattr(fd, TCSANOW, &t);
    }
    return fd;
}

int accept_tcp(const std::string& hostport) {
    size_t colon = hostport.rfind(':');
    if (colon == std::string::npos) die(kUsage, "--listen expects HOST:PORT, got '%s'", hostport.c_str());
    std::string host = hostport.substr(0, colon);
    long port = to_long("--listen port", hostport.substr(colon + 1).c_str());
    int s = socket(AF_INET, SOCK_STREAM, 0);
    int one = 1;
    setsockopt(s, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(static_cast<uint16_t>(port));
    if (inet_pton(AF_INET, host.c_str(), &a.sin_addr) != 1) die(kUsage, "--listen: '%s' is not an IPv4 address", host.c_str());
    if (bind(s, reinterpret_cast<sockaddr*>(&a), sizeof a) || listen(s, 1))
        die(kIo, "cannot listen on %s (%s)", hostport.c_str(), std::strerror(errno));
    socklen_t len = sizeof a;
    getsockname(s, reinterpret_cast<sockaddr*>(&a), &len);
    std::fprintf(stderr, "pae_stub: listening on %s:%u\n", host.c_str(), ntohs(a.sin_port));
    std::fflush(stderr);
    int c = accept(s, nullptr, nullptr);
    if (c < 0) die(kIo, "accept failed (%s)", std::strerror(errno));
    setsockopt(c, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    close(s);
    return c;
}

// --- bench -----------------------------------------------------------------------------------

size_t file_size(const char* path) {
    struct stat st;
    return stat(path, &st) == 0 ? static_cast<size_t>(st.st_size) : 0;
}

int runtime_lib(dl_phdr_info* info, size_t, void* data) {
    auto* total = static_cast<size_t*>(data);
    const char* name = info->dlpi_name;
    if (name && (std::strstr(name, "libtvm_runtime") || std::strstr(name, "libtvm_ffi"))) *total += file_size(name);
    return 0;
}

// Peak resident set of this program in KiB. getrusage's ru_maxrss survives execve, so a stub started
// from a large parent (a Python host with torch loaded) would report the parent's peak; VmHWM belongs
// to this program's own address space. Under qemu-user it is the emulator process (guest included).
long peak_rss_kb() {
    if (FILE* f = std::fopen("/proc/self/status", "r")) {
        char line[256];
        long kb = -1;
        while (std::fgets(line, sizeof line, f))
            if (std::sscanf(line, "VmHWM: %ld kB", &kb) == 1) break;
        std::fclose(f);
        if (kb > 0) return kb;
    }
    rusage ru{};
    getrusage(RUSAGE_SELF, &ru);
    return static_cast<long>(ru.ru_maxrss);
}

int bench(const Config& cfg, const Loaded& L) {
    std::vector<float> obs;
    if (!cfg.obs_file.empty()) {
        std::vector<uint8_t> raw;
        if (!read_file(cfg.obs_file, raw)) die(kIo, "%s: cannot read", cfg.obs_file.c_str());
        size_t row = sizeof(float) * L.obs_dim;
        if (raw.empty() || raw.size() % row) die(kIo, "%s: size is not a multiple of obs_dim float32 values", cfg.obs_file.c_str());
        obs.resize(raw.size() / sizeof(float));
        std::memcpy(obs.data(), raw.data(), raw.size());
    } else {  // uniform in [-1, 1), from a fixed xorshift so runs are comparable
        uint64_t x = cfg.seed * 2654435761ull + 88172645463325252ull;
        obs.resize(static_cast<size_t>(L.obs_dim) * 1024);
        for (float& v : obs) {
            x ^= x << 13; x ^= x >> 7; x ^= x << 17;
            v = static_cast<float>((x >> 11) * (1.0 / 9007199254740992.0)) * 2.0f - 1.0f;
        }
    }
    size_t rows = obs.size() / L.obs_dim;
    float act[PAE_MAX_FLOATS];
    char err[512];
    for (long i = 0; i < cfg.warmup; i++)
        if (pae_model_infer(&obs[(i % rows) * L.obs_dim], act, err, sizeof err)) die(kLoad, "inference failed: %s", err);
    std::vector<double> t(static_cast<size_t>(cfg.n));
    double checksum = 0;
    for (long i = 0; i < cfg.n; i++) {
        double t0 = now_us();
        if (pae_model_infer(&obs[(i % rows) * L.obs_dim], act, err, sizeof err)) die(kLoad, "inference failed: %s", err);
        stall(cfg.stall_us);
        t[i] = now_us() - t0;
        checksum += act[0];
    }
    std::vector<double> s = t;
    std::sort(s.begin(), s.end());
    auto pct = [&](double q) { return s[std::min(s.size() - 1, static_cast<size_t>(q * (s.size() - 1) + 0.5))]; };
    double mean = 0;
    for (double v : t) mean += v;
    mean /= static_cast<double>(t.size());
    size_t runtime_bytes = 0;
    dl_iterate_phdr(runtime_lib, &runtime_bytes);
    std::printf("{\"target\": \"%s\", \"runtime\": \"%s\", \"n\": %ld, \"latency_us\": {\"min\": %.3f, \"p50\": %.3f, "
                "\"p99\": %.3f, \"max\": %.3f, \"mean\": %.3f}, \"peak_rss_kb\": %ld, \"model_bytes\": %zu, "
                "\"library_bytes\": %zu, \"sha256\": \"%s\", \"checksum\": %.9g}\n",
                cfg.target.c_str(), pae_model_runtime(), cfg.n, s.front(), pct(0.5), pct(0.99), s.back(), mean,
                peak_rss_kb(), L.model_bytes, runtime_bytes, L.sha256.c_str(), checksum);
    return kOk;
}

}  // namespace

int main(int argc, char** argv) {
    signal(SIGPIPE, SIG_IGN);  // a vanished host is a write error, not a crash
    Config cfg = parse_args(argc, argv);
    Loaded L = load_bundle(cfg);
    if (cfg.mode == "info") {
        std::printf("{\"target\": \"%s\", \"runtime\": \"%s\", \"obs_dim\": %d, \"act_dim\": %d, \"sha256\": \"%s\", "
                    "\"protocol\": %d}\n",
                    cfg.target.c_str(), pae_model_runtime(), L.obs_dim, L.act_dim, L.sha256.c_str(), PAE_PROTOCOL_VERSION);
        return kOk;
    }
    if (cfg.mode == "bench") return bench(cfg, L);
    std::vector<float> safe = cfg.safe_action;
    if (safe.empty()) safe.assign(static_cast<size_t>(L.act_dim), 0.0f);
    if (safe.size() != static_cast<size_t>(L.act_dim)) {
        std::string got = std::to_string(safe.size()), want = std::to_string(L.act_dim);
        die(kUsage, "--safe-action has %s values, the controller has act_dim %s", got.c_str(), want.c_str());
    }
    int fd_in = 0, fd_out = 1;
    if (!cfg.serial.empty()) fd_in = fd_out = open_serial(cfg.serial);
    else if (!cfg.listen.empty()) fd_in = fd_out = accept_tcp(cfg.listen);
    Server srv{cfg, L, fd_in, fd_out, safe, {}};
    int rc = srv.run();
    std::fprintf(stderr,
                 "pae_stub: served frames_ok=%u actions=%u errors=%u crc_errors=%u resyncs=%u skipped_bytes=%u "
                 "deadline_misses=%u\n",
                 srv.h.parser.frames_ok, srv.h.actions, srv.h.errors, srv.h.parser.crc_errors, srv.h.parser.resyncs,
                 srv.h.parser.skipped_bytes, srv.h.deadline_misses);
    return rc;
}
