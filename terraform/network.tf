# The cluster's own VPC. Nodes have no public addresses (private cluster): Google APIs (the model bucket,
# Artifact Registry) are reached through Private Google Access, anything else on the internet through Cloud NAT.
resource "google_compute_network" "vpc" {
  name                    = "geoml-vpc"
  auto_create_subnetworks = false
  routing_mode            = "REGIONAL"
  depends_on              = [google_project_service.required]
}

resource "google_compute_subnetwork" "gke" {
  name                     = "geoml-gke-${var.region}"
  region                   = var.region
  network                  = google_compute_network.vpc.id
  ip_cidr_range            = var.subnet_cidr
  private_ip_google_access = true

  secondary_ip_range {
    range_name    = "pods"
    ip_cidr_range = var.pods_cidr
  }

  secondary_ip_range {
    range_name    = "services"
    ip_cidr_range = var.services_cidr
  }

  # Sampled flow logs: enough to investigate traffic, at a fraction of the cost of full logging.
  log_config {
    aggregation_interval = "INTERVAL_5_MIN"
    flow_sampling        = 0.2
    metadata             = "INCLUDE_ALL_METADATA"
  }
}

resource "google_compute_router" "nat" {
  name    = "geoml-nat-router"
  region  = var.region
  network = google_compute_network.vpc.id
}

resource "google_compute_router_nat" "nat" {
  name                               = "geoml-nat"
  router                             = google_compute_router.nat.name
  region                             = var.region
  nat_ip_allocate_option             = "AUTO_ONLY"
  source_subnetwork_ip_ranges_to_nat = "ALL_SUBNETWORKS_ALL_IP_RANGES"

  log_config {
    enable = true
    filter = "ERRORS_ONLY"
  }
}

# GKE adds its own allow rules (priority 1000) for nodes, pods and the control plane. Everything else arriving
# at the VPC is refused by this rule, which, unlike the implied deny, logs what it refuses.
resource "google_compute_firewall" "deny_other_ingress" {
  name      = "geoml-deny-other-ingress"
  network   = google_compute_network.vpc.id
  direction = "INGRESS"
  priority  = 65000

  source_ranges = ["0.0.0.0/0"]

  deny {
    protocol = "all"
  }

  log_config {
    metadata = "EXCLUDE_ALL_METADATA"
  }
}
