/* A minimal NVTX tool for tests: NVTX3 loads it from NVTX_INJECTION64_PATH the way Nsight Systems
 * loads its own, and it writes every domain range push/pop as a line to $CVRL_NVTX_PROBE_LOG:
 *   push <domain> <message> <thread id>     pop <domain> <thread id>
 * Domain and registered-string handles are the strdup'ed names. */
#include <nvtx3/nvToolsExt.h>

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

static FILE* log_file;
static pthread_mutex_t log_mutex = PTHREAD_MUTEX_INITIALIZER;

static const char* domain_name(nvtxDomainHandle_t d) { return d ? (const char*)d : "(default)"; }

static const char* message_of(const nvtxEventAttributes_t* a) {
  if (a == NULL) return "";
  if (a->messageType == NVTX_MESSAGE_TYPE_ASCII) return a->message.ascii;
  if (a->messageType == NVTX_MESSAGE_TYPE_REGISTERED) return (const char*)a->message.registered;
  return "(unsupported message type)";
}

static void write_line(const char* kind, nvtxDomainHandle_t d, const char* message) {
  pthread_mutex_lock(&log_mutex);
  if (log_file) {
    fprintf(log_file, "%s\t%s\t%s\t%ld\n", kind, domain_name(d), message, (long)syscall(SYS_gettid));
    fflush(log_file);
  }
  pthread_mutex_unlock(&log_mutex);
}

static nvtxDomainHandle_t domain_create(const char* name) { return (nvtxDomainHandle_t)strdup(name); }
static nvtxStringHandle_t string_register(nvtxDomainHandle_t d, const char* s) { (void)d; return (nvtxStringHandle_t)strdup(s); }
static int range_push(nvtxDomainHandle_t d, const nvtxEventAttributes_t* a) { write_line("push", d, message_of(a)); return 0; }
static int range_pop(nvtxDomainHandle_t d) { write_line("pop", d, ""); return 0; }
static nvtxRangeId_t range_start(nvtxDomainHandle_t d, const nvtxEventAttributes_t* a) { write_line("start", d, message_of(a)); return 1; }
static void range_end(nvtxDomainHandle_t d, nvtxRangeId_t id) { (void)id; write_line("end", d, ""); }

int InitializeInjectionNvtx2(NvtxGetExportTableFunc_t get_export_table) {
  const NvtxExportTableCallbacks* callbacks = (const NvtxExportTableCallbacks*)get_export_table(NVTX_ETID_CALLBACKS);
  NvtxFunctionTable table = NULL;
  unsigned int size = 0;
  if (callbacks == NULL || !callbacks->GetModuleFunctionTable(NVTX_CB_MODULE_CORE2, &table, &size)) return 0;
  if (size <= NVTX_CBID_CORE2_DomainCreateA) return 0;
  pthread_mutex_lock(&log_mutex);
  if (log_file == NULL) {
    const char* path = getenv("CVRL_NVTX_PROBE_LOG");
    log_file = fopen(path ? path : "/dev/null", "a");
  }
  pthread_mutex_unlock(&log_mutex);
  *table[NVTX_CBID_CORE2_DomainCreateA] = (NvtxFunctionPointer)domain_create;
  *table[NVTX_CBID_CORE2_DomainRegisterStringA] = (NvtxFunctionPointer)string_register;
  *table[NVTX_CBID_CORE2_DomainRangePushEx] = (NvtxFunctionPointer)range_push;
  *table[NVTX_CBID_CORE2_DomainRangePop] = (NvtxFunctionPointer)range_pop;
  *table[NVTX_CBID_CORE2_DomainRangeStartEx] = (NvtxFunctionPointer)range_start;
  *table[NVTX_CBID_CORE2_DomainRangeEnd] = (NvtxFunctionPointer)range_end;
  return 1;
}
