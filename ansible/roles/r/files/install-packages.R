# Installs the named R packages that are not installed yet, from CRAN or Bioconductor, into one library.
# Usage: Rscript install-packages.R cran|bioconductor LIBRARY REPO PACKAGE...
# Prints "installed: <names>" when it installed something (Ansible's changed_when reads it) and fails
# (exit status 1) when a package is still missing afterwards: install.packages() only warns on failure.
args <- commandArgs(trailingOnly = TRUE)
source <- args[1]
library <- args[2]
repo <- args[3]
wanted <- args[-(1:3)]
.libPaths(c(library, .libPaths()))
missing <- wanted[!vapply(wanted, requireNamespace, logical(1), quietly = TRUE)]
if (length(missing) > 0) {
  if (source == "bioconductor") {
    if (!requireNamespace("BiocManager", quietly = TRUE)) {
      install.packages("BiocManager", lib = library, repos = repo)
    }
    BiocManager::install(missing, lib = library, update = FALSE, ask = FALSE)
  } else {
    install.packages(missing, lib = library, repos = repo)
  }
  still <- missing[!vapply(missing, requireNamespace, logical(1), quietly = TRUE)]
  if (length(still) > 0) {
    message("could not install: ", paste(still, collapse = " "))
    quit(status = 1)
  }
  cat("installed:", missing, "\n")
}
