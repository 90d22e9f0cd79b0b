//! Customers: who they are (a pure function of their id) and the daily
//! signups file.
//!
//! A customer's name, email and country are derived from a hash of their id,
//! so orders and clicks on any day can look up a customer's country without
//! reading or replaying the customers file. The file of day `d` lists the
//! customers who signed up that day; day 0 also carries the initial base,
//! customers who signed up during the two years before the lake starts.
//!
//! Reject dirt (a missing email, an impossible signup date) is only ever put
//! on customers who never order, so rejecting a customer row never orphans an
//! order. The schedule makes sure enough signups never order.

use crate::calendar::{DateStyle, push_date_styled};
use crate::encode::{push_csv_field, push_u64};
use crate::rng::{Quota, Rng, Stream, Tag, hash};
use crate::stats::{Entity, Kind, Tally};
use crate::world::World;

/// A country customers live in, with its share of customers in per mille.
#[derive(Clone, Copy, Debug)]
pub struct Country {
    /// ISO 3166-1 alpha-2.
    pub code: &'static str,
    pub name: &'static str,
    pub region: &'static str,
    pub weight_per_mille: u32,
}

/// Every country code the generator writes (uppercase; the lowercase noise
/// spells one of these).
pub const COUNTRIES: [Country; 19] = [
    country("FR", "France", "Europe", 300),
    country("DE", "Germany", "Europe", 150),
    country("US", "United States", "North America", 150),
    country("GB", "United Kingdom", "Europe", 100),
    country("ES", "Spain", "Europe", 80),
    country("IT", "Italy", "Europe", 80),
    country("NL", "Netherlands", "Europe", 50),
    country("BE", "Belgium", "Europe", 40),
    country("CH", "Switzerland", "Europe", 30),
    country("AT", "Austria", "Europe", 2),
    country("PT", "Portugal", "Europe", 2),
    country("IE", "Ireland", "Europe", 2),
    country("SE", "Sweden", "Europe", 2),
    country("DK", "Denmark", "Europe", 2),
    country("PL", "Poland", "Europe", 2),
    country("CA", "Canada", "North America", 2),
    country("BR", "Brazil", "South America", 2),
    country("JP", "Japan", "Asia", 2),
    country("AU", "Australia", "Oceania", 2),
];

const fn country(code: &'static str, name: &'static str, region: &'static str, weight_per_mille: u32) -> Country {
    Country {
        code,
        name,
        region,
        weight_per_mille,
    }
}

const FIRST_NAMES: &str = "\
Adam, Adrien, Adèle, Agathe, Agnès, Aidan, Alba, Albert, Alessandro, Alexandre, Alice, Aline, Amy, Amélie,\
Ana, Anaïs, Andrea, André, Anna, Anne, Antoine, Antonio, Arthur, Aurélie, Axel, Baptiste, Beatriz, Ben,\
Benoît, Bernard, Björn, Bram, Camille, Carla, Carlos, Caroline, Charlotte, Chloé, Chris, Claire, Clara,\
Clément, Cécile, Céline, Daan, Daniel, David, Diego, Dominik, Eleanor, Elena, Ella, Emil, Emily, Emma, Enzo,\
Eric, Ethan, Eva, Fabian, Felix, Fernando, Finn, Florian, Francesca, François, Frédéric, Gabriel, Gaël,\
Gaëlle, George, Giulia, Grace, Guillaume, Hanna, Hannah, Harry, Henri, Hugo, Hélène, Ida, Ines, Inès, Isabel,\
Isabelle, Jack, Jacob, James, Jan, Jana, Javier, Jessica, Jonas, Joseph, José, João, Jules, Julia, Julie,\
Julien, Jérôme, Jörg, Jürgen, Kai, Karin, Katharina, Kevin, Klaus, Lara, Laura, Laurent, Leon, Leonie, Liam,\
Lina, Lisa, Lorenzo, Lotte, Louis, Louise, Loïc, Luca, Lucas, Lucía, Lukas, Léa, Léo, Marco, Maria, Marie,\
Marta, Martin, Mathilde, Mats, Matteo, Max, Maxime, Maël, Mia, Michael, Miguel, Mila, Milan, Nathalie,\
Nicolas, Nicolò, Niklas, Nils, Noah, Nora, Noémie, Océane, Oliver, Olivia, Oscar, Pablo, Paul, Pauline,\
Pedro, Perrine, Philippe, Pierre, Quentin, Rafael, Raphaël, Raúl, Rebecca, Renée, Robin, Rosa, Sam, Samuel,\
Sandra, Sara, Sarah, Sebastian, Simon, Sofia, Sofía, Sophie, Stefan, Sven, Sylvie, Sören, Tess, Thomas, Théo,\
Tim, Tobias, Tom, Ugo, Valentina, Valérie, Victor, Vincent, William, Xavier, Yann, Yasmine, Youssef, Zoé,\
Zoë, Álvaro, Élise, Émile";

const LAST_NAMES: &str = "\
André, Bailey, Baker, Bakker, Barbier, Becker, Benoît, Bernard, Bertrand, Bianchi, Blanc, Blanchard, Boer,\
Bonnet, Bouvier, Boyer, Braun, Brown, Brunet, Bruno, Caron, Carpentier, Castillo, Chevalier, Clark, Colombo,\
Conti, Costa, D'Angelo, David, Davies, de Jong, de Vries, Dekker, Delgado, Denis, Dubois, Dumas, Dupont,\
Durand, Engel, Esposito, Evans, Fabre, Faure, Fernández, Ferrari, Ferreira, Fischer, Fontaine, Fournier,\
François, Fuchs, Galli, Gallo, Garcia, García, Garnier, Gauthier, Girard, González, Greco, Green, Groß,\
Guerin, Gérard, Gómez, Günther, Hall, Hansen, Hartmann, Hoffmann, Hughes, Hébert, Jansen, Janssens, Johnson,\
Jones, Kaiser, Keller, King, Klein, Koch, Krüger, Köhler, König, Lambert, Lange, Laurent, Leclerc, Lefèbvre,\
Lefèvre, Legrand, Lehmann, Lemaire, Lemaître, Lemoine, Leroy, Lewis, Lindqvist, Lombardi, Lorenz, López,\
Maes, Mancini, Marchand, Marino, Martin, Martín, Martínez, Mathieu, Mercier, Meyer, Michel, Miller, Moreau,\
Morel, Moreno, Moretti, Morris, Muñoz, Müller, Navarro, Neumann, Nicolas, Nowak, Núñez, O'Brien, O'Connor,\
Olsen, Ortega, Peeters, Pereira, Perrin, Peters, Petit, Philippe, Popescu, Pérez, Ramírez, Ricci, Richard,\
Richter, Rizzo, Robert, Roberts, Robin, Roche, Rodríguez, Romano, Romero, Rossi, Roussel, Roux, Rubio, Ruiz,\
Russo, Santos, Sauer, Schmid, Schmidt, Schmitt, Schneider, Scholz, Schröder, Schulz, Schwarz, Schäfer, Silva,\
Simon, Smit, Smith, Sousa, Sánchez, Taylor, Thomas, Turner, van den Berg, van Dijk, Vidal, Vincent, Visser,\
Vogel, Vogt, Wagner, Walker, Weber, Weiß, White, Williams, Wilson, Wolf, Wood, Wouters, Wright, Young,\
Zeller, Zimmermann, Álvarez, Åberg";

/// Email domains and their weights.
const DOMAINS: &[(&str, u32)] = &[
    ("gmail.com", 30),
    ("outlook.com", 10),
    ("hotmail.com", 8),
    ("yahoo.com", 8),
    ("icloud.com", 7),
    ("orange.fr", 8),
    ("free.fr", 5),
    ("laposte.net", 3),
    ("gmx.de", 6),
    ("web.de", 5),
    ("libero.it", 3),
    ("proton.me", 4),
    ("example.org", 2),
];

/// Signup dates that cannot exist, in the formats the file otherwise uses.
const IMPOSSIBLE_DATES: &[&str] = &[
    "32/13/2025",
    "2024-02-30",
    "2023-02-29",
    "2024-13-01",
    "31/06/2024",
    "20240431",
];

/// The index into [`COUNTRIES`] of a customer's country.
pub fn country_of(seed: u64, customer_id: u64) -> usize {
    let mut x = (hash(seed, Tag::CustomerProfile, customer_id) % 1000) as u32;
    for (i, c) in COUNTRIES.iter().enumerate() {
        if x < c.weight_per_mille {
            return i;
        }
        x -= c.weight_per_mille;
    }
    0
}

/// A name folded to what an email address would hold: ASCII lowercase
/// letters only (`Müller` -> `muller`, `D'Angelo` -> `dangelo`).
fn fold(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for c in name.chars() {
        let c = match c {
            'à' | 'á' | 'â' | 'ä' | 'å' | 'Á' | 'Å' => 'a',
            'ç' => 'c',
            'è' | 'é' | 'ê' | 'ë' | 'É' => 'e',
            'í' | 'ï' | 'î' => 'i',
            'ñ' => 'n',
            'ò' | 'ó' | 'ô' | 'ö' | 'ø' => 'o',
            'ù' | 'ú' | 'û' | 'ü' => 'u',
            'ß' => {
                out.push_str("ss");
                continue;
            }
            c => c.to_ascii_lowercase(),
        };
        if c.is_ascii_lowercase() {
            out.push(c);
        }
    }
    out
}

/// Names with their email spellings, folded once per run. The lists are
/// comma-separated strings so that rustfmt keeps them compact.
pub struct Names {
    first: Vec<(&'static str, String)>,
    last: Vec<(&'static str, String)>,
}

impl Names {
    pub fn new() -> Names {
        let folded = |names: &'static str| names.split(',').map(|n| (n.trim(), fold(n.trim()))).collect();
        Names {
            first: folded(FIRST_NAMES),
            last: folded(LAST_NAMES),
        }
    }
}

/// Appends the customer's email: a name-derived local part made unique by
/// the id, at a weighted domain.
fn push_email(buf: &mut Vec<u8>, first: &str, last: &str, id: u64, h: u64) {
    match (h >> 40) % 4 {
        0 => {
            buf.extend_from_slice(first.as_bytes());
            buf.push(b'.');
            buf.extend_from_slice(last.as_bytes());
        }
        1 => {
            buf.extend_from_slice(first.as_bytes());
            buf.extend_from_slice(last.as_bytes());
        }
        2 => {
            buf.extend_from_slice(&first.as_bytes()[..1]);
            buf.push(b'.');
            buf.extend_from_slice(last.as_bytes());
        }
        _ => {
            buf.extend_from_slice(last.as_bytes());
            buf.push(b'_');
            buf.extend_from_slice(first.as_bytes());
        }
    }
    push_u64(buf, id);
    buf.push(b'@');
    let total: u32 = DOMAINS.iter().map(|d| d.1).sum();
    let mut x = ((h >> 44) % u64::from(total)) as u32;
    for (domain, w) in DOMAINS {
        if x < *w {
            buf.extend_from_slice(domain.as_bytes());
            return;
        }
        x -= w;
    }
}

/// One customer row's part in the day's file.
struct Row {
    id: u64,
    signup_day: i64,
    buyer: bool,
}

pub const HEADER: &str = "customer_id,first_name,last_name,email,country,signup_date\n";

/// Writes the customers file of `day` into `buf`.
pub fn write_day(buf: &mut Vec<u8>, world: &World, day: u32, tally: &mut Tally) {
    let (seed, schedule, names) = (world.seed, &world.schedule, &world.names);
    buf.extend_from_slice(HEADER.as_bytes());
    let plan = schedule.day(day);
    let mut rows = Vec::new();
    if day == 0 {
        for id in 1..=schedule.base_buyers + schedule.base_non_buyers {
            let before = 1 + (hash(seed, Tag::CustomerSignup, id) % 730) as i64;
            rows.push(Row {
                id,
                signup_day: world.start_day - before,
                buyer: id <= schedule.base_buyers,
            });
        }
    }
    let today = world.start_day + i64::from(day);
    for i in 0..plan.new_buyers + plan.non_buyers {
        rows.push(Row {
            id: plan.first_customer_id + i,
            signup_day: today,
            buyer: i < plan.new_buyers,
        });
    }

    // Rejects land on non-buyers only, yet make up `dirt_rate` of all rows.
    let non_buyers = rows.iter().filter(|r| !r.buyer).count() as u64;
    let mut rejects = Quota::new((world.dirt_rate * rows.len() as f64).round() as u64, non_buyers);

    let mut rng = Rng::stream(seed, day, Stream::Customers);
    let mut email = Vec::with_capacity(64);
    for row in &rows {
        let h = hash(seed, Tag::CustomerProfile, row.id);
        let (first, first_folded) = &names.first[((h >> 10) % names.first.len() as u64) as usize];
        let (last, last_folded) = &names.last[((h >> 25) % names.last.len() as u64) as usize];
        let country = COUNTRIES[country_of(seed, row.id)].code;

        let reject = (!row.buyer && rejects.take(&mut rng)).then(|| {
            if rng.chance(0.5) {
                Kind::MissingEmail
            } else {
                Kind::InvalidSignupDate
            }
        });
        tally.row(Entity::Customers);

        push_u64(buf, row.id);
        buf.push(b',');
        push_csv_field(buf, first);
        buf.push(b',');
        push_csv_field(buf, last);
        buf.push(b',');
        if reject == Some(Kind::MissingEmail) {
            tally.kind(Kind::MissingEmail);
        } else {
            email.clear();
            push_email(&mut email, first_folded, last_folded, row.id, h);
            // A rejected row is wrong for one reason only: it carries no noise.
            let u = if reject.is_some() { 1.0 } else { rng.unit() };
            if u < 0.02 {
                email.make_ascii_uppercase();
                tally.kind(Kind::EmailCase);
            } else if u < 0.03 {
                email[0] = email[0].to_ascii_uppercase();
                tally.kind(Kind::EmailCase);
            } else if u < 0.05 {
                email.insert(0, b' ');
                email.push(b' ');
                tally.kind(Kind::EmailWhitespace);
            }
            buf.extend_from_slice(&email);
        }
        buf.push(b',');
        if reject.is_none() && rng.chance(0.02) {
            buf.extend(country.bytes().map(|b| b.to_ascii_lowercase()));
            tally.kind(Kind::CountryLowercase);
        } else {
            buf.extend_from_slice(country.as_bytes());
        }
        buf.push(b',');
        if reject == Some(Kind::InvalidSignupDate) {
            buf.extend_from_slice(rng.pick(IMPOSSIBLE_DATES).as_bytes());
            tally.kind(Kind::InvalidSignupDate);
        } else {
            let style = if reject.is_some() {
                0
            } else {
                rng.weighted(&[85, 5, 5, 5])
            };
            let (style, kind) = match style {
                0 => (DateStyle::Iso, None),
                1 => (DateStyle::DayMonthYear, Some(Kind::SignupDateDayMonthYear)),
                2 => (DateStyle::YearSlash, Some(Kind::SignupDateYearSlash)),
                _ => (DateStyle::Compact, Some(Kind::SignupDateCompact)),
            };
            push_date_styled(buf, row.signup_day, style);
            if let Some(kind) = kind {
                tally.kind(kind);
            }
        }
        buf.push(b'\n');
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn country_weights_sum_to_one_thousand_and_codes_are_alpha2() {
        assert_eq!(COUNTRIES.iter().map(|c| c.weight_per_mille).sum::<u32>(), 1000);
        for c in COUNTRIES {
            assert!(
                c.code.len() == 2 && c.code.bytes().all(|b| b.is_ascii_uppercase()),
                "{}",
                c.code
            );
        }
    }

    #[test]
    fn names_fold_to_ascii() {
        assert_eq!(fold("Müller"), "muller");
        assert_eq!(fold("Zoé"), "zoe");
        assert_eq!(fold("D'Angelo"), "dangelo");
        assert_eq!(fold("Weiß"), "weiss");
        assert_eq!(fold("van den Berg"), "vandenberg");
        let names = Names::new();
        assert!(names.first.len() >= 200 && names.last.len() >= 200);
        for (name, folded) in names.first.iter().chain(&names.last) {
            assert!(!name.is_empty() && name.trim() == *name, "{name:?}");
            assert!(folded.len() >= 2, "{name} folds to {folded}");
        }
    }
}
