/*
 * The glibc-only entry points that Debian's libgcc_s and libnftables (with
 * libnftnl, libmnl, libxtables, libjansson, libgmp), all built against
 * glibc, import, so that the musl daemon of scripts/musl-test.sh can load
 * them as it loads OpenWrt's musl builds on a router. musl's loader maps
 * their libc.so.6 dependency to musl itself and resolves everything else
 * from musl; this library, preloaded, adds what musl lacks:
 *   - the _FORTIFY_SOURCE variants (__*_chk), with glibc's meaning: they
 *     abort when the destination is smaller than what would be written;
 *   - fcntl64, and gmp's obstack printf (never called by nftables);
 *   - __cpu_model and __cpu_indicator_init, which Debian's libgcc_s both
 *     defines and imports under a non-default symbol version that musl's
 *     loader does not bind to (they serve __builtin_cpu_supports, which
 *     neither Rust's std nor the daemon uses);
 *   - _dl_find_object, which Debian's unwinder (gcc 12 built against glibc
 *     >= 2.35) uses to find the unwind tables of the code at a PC. A gcc
 *     built for musl, as OpenWrt's is, walks dl_iterate_phdr() instead;
 *     this does the same walk and answers in _dl_find_object's terms.
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <limits.h>
#include <link.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/select.h>

#define CHECK(ok) do { if (!(ok)) abort(); } while (0)

void *__memcpy_chk(void *d, const void *s, size_t n, size_t dl)
{
	CHECK(n <= dl);
	return memcpy(d, s, n);
}

void *__memset_chk(void *d, int c, size_t n, size_t dl)
{
	CHECK(n <= dl);
	return memset(d, c, n);
}

char *__strcpy_chk(char *d, const char *s, size_t dl)
{
	CHECK(strlen(s) < dl);
	return strcpy(d, s);
}

char *__strncpy_chk(char *d, const char *s, size_t n, size_t dl)
{
	CHECK(n <= dl);
	return strncpy(d, s, n);
}

char *__strcat_chk(char *d, const char *s, size_t dl)
{
	CHECK(strlen(d) + strlen(s) < dl);
	return strcat(d, s);
}

char *__strncat_chk(char *d, const char *s, size_t n, size_t dl)
{
	CHECK(strlen(d) + strnlen(s, n) < dl);
	return strncat(d, s, n);
}

int __vfprintf_chk(FILE *f, int flag, const char *fmt, va_list ap)
{
	(void)flag;
	return vfprintf(f, fmt, ap);
}

int __fprintf_chk(FILE *f, int flag, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	int r = __vfprintf_chk(f, flag, fmt, ap);
	va_end(ap);
	return r;
}

int __printf_chk(int flag, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	int r = __vfprintf_chk(stdout, flag, fmt, ap);
	va_end(ap);
	return r;
}

/* musl's vsnprintf refuses a size over INT_MAX (EOVERFLOW); glibc's does not */
static size_t clamp(size_t n)
{
	return n > INT_MAX ? INT_MAX : n;
}

int __vsnprintf_chk(char *s, size_t n, int flag, size_t sl, const char *fmt, va_list ap)
{
	(void)flag;
	CHECK(n <= sl);
	return vsnprintf(s, clamp(n), fmt, ap);
}

int __snprintf_chk(char *s, size_t n, int flag, size_t sl, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	int r = __vsnprintf_chk(s, n, flag, sl, fmt, ap);
	va_end(ap);
	return r;
}

/* sl is the size of the destination, (size_t)-1 when the compiler did not know it */
int __vsprintf_chk(char *s, int flag, size_t sl, const char *fmt, va_list ap)
{
	(void)flag;
	int r = vsnprintf(s, clamp(sl), fmt, ap);
	CHECK(r >= 0 && (size_t)r < clamp(sl));
	return r;
}

int __sprintf_chk(char *s, int flag, size_t sl, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	int r = __vsprintf_chk(s, flag, sl, fmt, ap);
	va_end(ap);
	return r;
}

int __vasprintf_chk(char **s, int flag, const char *fmt, va_list ap)
{
	(void)flag;
	return vasprintf(s, fmt, ap);
}

int __asprintf_chk(char **s, int flag, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	int r = __vasprintf_chk(s, flag, fmt, ap);
	va_end(ap);
	return r;
}

long __fdelt_chk(long d)
{
	CHECK(d >= 0 && d < FD_SETSIZE);
	return d / (8 * (long)sizeof(long));
}

int fcntl64(int fd, int cmd, ...)
{
	va_list ap;
	va_start(ap, cmd);
	long arg = va_arg(ap, long);
	va_end(ap);
	return fcntl(fd, cmd, arg);
}

/* libgmp's gmp_obstack_*printf: nftables never calls them. */
int obstack_vprintf(void *o, const char *fmt, va_list ap)
{
	(void)o, (void)fmt, (void)ap;
	abort();
}

void _obstack_newchunk(void *o, size_t n)
{
	(void)o, (void)n;
	abort();
}

/* glibc's <dlfcn.h> layout on x86_64 (no dlfo_eh_dbase/dlfo_eh_count). */
struct dl_find_object {
	unsigned long long dlfo_flags;
	void *dlfo_map_start;
	void *dlfo_map_end;
	void *dlfo_link_map;
	void *dlfo_eh_frame;
	unsigned long long reserved[7];
};

struct query {
	uintptr_t pc;
	struct dl_find_object *out;
};

static int visit(struct dl_phdr_info *info, size_t size, void *data)
{
	struct query *q = data;
	uintptr_t lo = UINTPTR_MAX, hi = 0;
	const void *eh = NULL;
	int hit = 0;
	(void)size;
	for (size_t i = 0; i < info->dlpi_phnum; i++) {
		const ElfW(Phdr) *p = &info->dlpi_phdr[i];
		uintptr_t start = info->dlpi_addr + p->p_vaddr;
		if (p->p_type == PT_LOAD) {
			if (q->pc >= start && q->pc - start < p->p_memsz)
				hit = 1;
			if (start < lo)
				lo = start;
			if (start + p->p_memsz > hi)
				hi = start + p->p_memsz;
		} else if (p->p_type == PT_GNU_EH_FRAME) {
			eh = (const void *)start;
		}
	}
	if (!hit)
		return 0;
	q->out->dlfo_flags = 0;
	q->out->dlfo_map_start = (void *)lo;
	q->out->dlfo_map_end = (void *)hi;
	q->out->dlfo_link_map = NULL;
	q->out->dlfo_eh_frame = (void *)eh;
	return 1;
}

int _dl_find_object(void *pc, struct dl_find_object *out)
{
	struct query q = { (uintptr_t)pc, out };
	return dl_iterate_phdr(visit, &q) ? 0 : -1;
}

/* libgcc's x86 CPU model (gcc/common/config/i386/cpuinfo.h), left unknown. */
struct cpu_model {
	unsigned int vendor, type, subtype, features[1];
} __cpu_model;

int __cpu_indicator_init(void)
{
	return 0;
}
