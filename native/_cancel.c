/* A cancel flag that llama.cpp reads while it computes, without Python's GIL.

llama.cpp calls an abort callback (`bool (*)(void *data)`) between the nodes of every graph it
computes; when it returns true, llama_decode stops, drops the cells of the batch it had not
finished and returns 2. A callback written in Python would take the GIL several hundred times per
batch, each time waiting for the language server's event loop; this one reads one byte, which
native/cancel.py's CancelFlag writes when it is set. */

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdbool.h>
#include <stdint.h>

static bool flag_is_set(void *flag) {
    return flag != NULL && __atomic_load_n((const unsigned char *)flag, __ATOMIC_RELAXED) != 0;
}

static PyObject *callback_address(PyObject *module, PyObject *unused) {
    (void)module;
    (void)unused;
    return PyLong_FromVoidPtr((void *)(uintptr_t)flag_is_set);
}

static PyMethodDef methods[] = {
    {"callback_address", callback_address, METH_NOARGS,
     "The address of `bool flag_is_set(void *flag)`: true when the byte at `flag` is not 0."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, .m_name = "_cancel", .m_doc = "An abort callback for llama.cpp that reads one byte.",
    .m_size = -1, .m_methods = methods,
};

PyMODINIT_FUNC PyInit__cancel(void) { return PyModule_Create(&module); }
