# Runs a Binder repository's install.R the way repo2docker does (Rscript, CRAN as the repository), with one
# difference: a package install.packages() could not install fails the run (R only warns).
# Usage: Rscript run-install-r.R INSTALL.R LIBRARY REPO RECORD
# Writes the names install.R asked install.packages() for to RECORD (verify loads each of them).
args <- commandArgs(trailingOnly = TRUE)
script <- args[1]
library <- args[2]
repo <- args[3]
record <- args[4]
options(repos = c(CRAN = repo))
.libPaths(c(library, .libPaths()))
requested <- character()
failures <- character()
install.packages <- function(pkgs, ...) {
  requested <<- c(requested, pkgs)
  utils::install.packages(pkgs, ...)
}
withCallingHandlers(
  source(script, echo = TRUE, max.deparse.length = 300),  # from the repository's folder, as repo2docker runs it
  warning = function(w) {
    text <- conditionMessage(w)
    if (grepl("non-zero exit status|is not available|is not available for this version of R", text)) {
      failures <<- c(failures, text)
    }
  }
)
missing <- requested[!vapply(requested, requireNamespace, logical(1), quietly = TRUE)]
if (length(failures) > 0 || length(missing) > 0) {
  message("install.R: could not install ", paste(unique(c(missing)), collapse = " "),
          if (length(failures) > 0) paste0(" (", failures[1], ")") else "")
  quit(status = 1)
}
writeLines(sort(unique(requested)), record)
cat("install.R asked for:", sort(unique(requested)), "\n")
