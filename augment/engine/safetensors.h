/* safetensors reader and F32 writer.
 *
 * A file is [u64 little-endian N][N bytes of JSON header][data]. st_open mmaps the file read-only and validates
 * the whole header before returning: every entry has a known dtype, an integer shape, offsets inside the data
 * section, a byte size equal to numel * dtype size, and no two tensors overlap (gaps are tolerated). Tensor data
 * is never copied; st_tensor.data points into the mapping (it may be unaligned: use st_to_f32, or check the
 * alignment before reading it as a typed array). */
#ifndef GENIE_SAFETENSORS_H
#define GENIE_SAFETENSORS_H
#include <stddef.h>
#include <stdint.h>

#define ST_MAX_DIMS 8

typedef enum {
    ST_F32, ST_F16, ST_BF16, ST_F64, ST_I64, ST_I32, ST_I16, ST_I8, ST_U8, ST_BOOL,
    ST_U64, ST_U32, ST_U16, ST_F8_E4M3, ST_F8_E5M2,
} st_dtype;

typedef struct {
    const char *name;
    st_dtype dtype;
    int ndim;                       /* 0 for a scalar */
    int64_t shape[ST_MAX_DIMS];
    int64_t numel;                  /* product of shape (1 for a scalar) */
    const void *data;               /* little-endian, row-major */
    size_t nbytes;
    const char *file;               /* the file (or buffer name) it came from, for messages */
} st_tensor;

typedef struct st_file st_file;

/* NULL + err_msg() naming the file and the offending tensor/value. */
st_file *st_open(const char *path);
/* The same over a caller's buffer, which must outlive the st_file; name is used in messages. */
st_file *st_open_mem(const void *buf, size_t len, const char *name);
void st_close(st_file *f);

int st_count(const st_file *f);
const st_tensor *st_at(const st_file *f, int i);                 /* header order */
const st_tensor *st_find(const st_file *f, const char *name);    /* NULL if absent (no error set) */
const char *st_path(const st_file *f);

const char *st_dtype_name(st_dtype d);
size_t st_dtype_size(st_dtype d);

/* dst[numel] = the tensor as float32, for F32/F16/BF16/F64/F8_*; -1 + err_msg() for integer dtypes. */
int st_to_f32(const st_tensor *t, float *dst);

/* Writes n F32 tensors (shape[i][0..ndim[i]-1]) to path via path.tmp + rename, contiguous in the given order
 * (readable by the reference implementation); the data section starts 8-byte aligned. */
int st_write_f32(const char *path, int n, const char *const *names, const float *const *data, const int *ndim,
                 const int64_t (*shape)[ST_MAX_DIMS]);

#endif
