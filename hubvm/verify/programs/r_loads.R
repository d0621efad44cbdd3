# For each wanted name: the installed package matching it case-insensitively (Debian lowercases names:
# r-cran-rcolorbrewer is RColorBrewer), its version, and whether library() loads it. One @@hubvm-item line each,
# tab-separated: wanted, package, version, "ok" or the error.
wanted <- commandArgs(trailingOnly = TRUE)
installed <- installed.packages()
for (w in wanted) {
  hit <- installed[tolower(installed[, "Package"]) == tolower(w), , drop = FALSE]
  if (nrow(hit) == 0) {
    cat("@@hubvm-item ", w, "\t\t\tnot installed\n", sep = "")
    next
  }
  p <- hit[1, "Package"]
  loaded <- tryCatch({
    suppressPackageStartupMessages(library(p, character.only = TRUE))
    "ok"
  }, error = function(e) gsub("[\t\n]", " ", conditionMessage(e)))
  cat("@@hubvm-item ", w, "\t", p, "\t", hit[1, "Version"], "\t", loaded, "\n", sep = "")
}
